/* Internals of libusbgw-policy shared between its files and its unit tests. */
#pragma once

#include "policy.h"

G_BEGIN_DECLS

/* ---- Lexer (policy-lexer.c) ------------------------------------------------ */

typedef enum {
    POLICY_TOKEN_WORD,   /* keyword or bare value: assign, 0529:0001, 08:*:* */
    POLICY_TOKEN_STRING, /* "quoted", escapes already resolved */
    POLICY_TOKEN_LBRACE,
    POLICY_TOKEN_RBRACE,
} PolicyTokenKind;

typedef struct {
    PolicyTokenKind kind;
    gchar *text;  /* owned */
    guint column; /* 1-based byte column of the token's first character */
    guint end;    /* 1-based byte column just past its last character */
} PolicyToken;

/* Splits one line (no newline in it) into tokens, appended to @tokens (an
 * array of PolicyToken with policy_token_clear as clear func, see
 * policy_token_array_new()). A comment ends the line. On error returns
 * FALSE with the 1-based column and a message. */
gboolean policy_lex_line(const gchar *line, gsize len, GArray *tokens, guint *error_column,
                         gchar **error_message);
GArray *policy_token_array_new(void);
void policy_token_clear(gpointer token);
/* "'assign'", "string \"x\"", "'{'": how a token is named in messages. */
gchar *policy_token_describe(const PolicyToken *token);

/* ---- Rules ---------------------------------------------------------------- */

/* The bytes a gateway name may have after its first (a letter or digit). */
#define POLICY_GATEWAY_NAME_CHARS                                                                  \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

/* A string matched literally, or as a glob when it has '*' or '?'. */
typedef struct {
    gchar *text;        /* owned */
    GPatternSpec *glob; /* owned, nullable: NULL when literal */
} PolicyGlob;

typedef struct {
    gint16 klass; /* -1: any */
    gint16 subclass;
    gint16 protocol;
} PolicyClassPattern;

typedef enum {
    POLICY_SET_ONE_OF,    /* some interface matches some pattern (default) */
    POLICY_SET_ALL_OF,    /* every pattern is matched by some interface */
    POLICY_SET_NONE_OF,   /* no interface matches any pattern */
    POLICY_SET_MATCH_ALL, /* every interface matches some pattern */
} PolicySetOp;

typedef enum {
    POLICY_ACTION_ASSIGN,
    POLICY_ACTION_DENY,
    POLICY_ACTION_SHARE,
    POLICY_ACTION_EXPORT,
    POLICY_ACTION_ALLOW_METADATA, /* allow metadata …: a VM's own wish, granted */
} PolicyAction;

typedef enum {
    POLICY_MATCH_ID = 1 << 0,
    POLICY_MATCH_SERIAL = 1 << 1,
    POLICY_MATCH_NAME = 1 << 2,
    POLICY_MATCH_PORT = 1 << 3,
    POLICY_MATCH_INTERFACE = 1 << 4,
    POLICY_MATCH_CLASS = 1 << 5,
    POLICY_MATCH_HASH = 1 << 6,
    POLICY_MATCH_USER = 1 << 7,
    POLICY_MATCH_GROUP = 1 << 8,
    POLICY_MATCH_GATEWAY = 1 << 9, /* on gateway "GLOB" */
} PolicyMatchFlags;

#define POLICY_MATCH_LAST POLICY_MATCH_GATEWAY

/* Matchers on what usbgwd reads of a host device itself: for a lent device
 * they would be whatever its client claims, so share rules cannot use them
 * and no rule with them matches a lent device. */
#define POLICY_MATCH_CLAIMED                                                                       \
    (POLICY_MATCH_SERIAL | POLICY_MATCH_NAME | POLICY_MATCH_PORT | POLICY_MATCH_HASH)

typedef struct {
    PolicyAction action;
    guint line;
    PolicyMatchFlags matchers;
    gint32 vendor_id;  /* -1: any */
    gint32 product_id; /* -1: any */
    PolicyGlob serial;
    PolicyGlob name;
    PolicyGlob port;
    gchar *hash; /* owned, nullable */
    PolicyClassPattern device_class;
    PolicySetOp interface_op;
    GArray *interfaces; /* owned, nullable: PolicyClassPattern */
    gchar *user;        /* owned, nullable */
    gchar *group;       /* owned, nullable */
    PolicyGlob gateway; /* on gateway "GLOB" */
    PolicyTargetKind target_kind;
    PolicyGlob target;
    gboolean required;
    gchar *metadata_pool; /* owned, nullable: allow metadata pool "NAME" */
} PolicyRule;

typedef struct {
    gchar *name; /* owned */
    PolicyGlob vms;
    guint line;
} PolicyPool;

struct _Policy {
    gint ref_count;
    gchar *filename;   /* owned */
    GPtrArray *rules;  /* owned: PolicyRule */
    GHashTable *pools; /* owned: name → PolicyPool */
};

void policy_glob_init(PolicyGlob *glob, const gchar *text);
void policy_glob_clear(PolicyGlob *glob);
gboolean policy_glob_match(const PolicyGlob *glob, const gchar *value);
gboolean policy_glob_is_literal(const PolicyGlob *glob);
const gchar *policy_matcher_name(PolicyMatchFlags flag);

/* "0529:0001", "0529:*", "*:*" into ids (-1: any); FALSE when it is not one. */
gboolean policy_parse_id(const gchar *text, gint32 *vendor_id, gint32 *product_id);
gboolean policy_class_pattern_match(const PolicyClassPattern *pattern, guint8 klass,
                                    guint8 subclass, guint8 protocol);
gboolean policy_rule_match_device(const PolicyRule *rule, const PolicyDevice *device);
gboolean policy_rule_target_is_for_vm(const Policy *policy, const PolicyRule *rule,
                                      const gchar *vm_name, const gchar *vm_uuid);

G_END_DECLS
