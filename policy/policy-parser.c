/* Parser for the rule language (grammar in docs/policy.md): one rule per
 * line, every problem collected with its file:line:column, and a text with
 * any problem rejected whole. */
#include "policy-private.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

/* the quark's name has dashes, which clang-format would space out */
/* clang-format off */
G_DEFINE_QUARK(usbgw-policy-error-quark, policy_error)
/* clang-format on */

/* Stop collecting after this many problems: a binary file fed by mistake
 * should not produce a million lines of diagnostics. */
#define POLICY_MAX_DIAGNOSTICS 100

typedef struct {
    const gchar *filename;
    guint lineno;
    const gchar *line;
    gsize line_len;
    GArray *tokens;         /* PolicyToken */
    guint pos;              /* next token */
    GPtrArray *diagnostics; /* PolicyDiagnostic */
    /* Pool targets may name pools defined further down: one diagnostic
     * per pool target, kept only if the pool is still unknown at the end. */
    GPtrArray *pool_refs; /* PolicyDiagnostic, message = the pool name */
} PolicyParser;

void
policy_diagnostic_free(PolicyDiagnostic *diag)
{
    if (diag == NULL)
        return;
    g_free(diag->file);
    g_free(diag->message);
    g_free(diag->line_text);
    g_free(diag);
}

gchar *
policy_diagnostic_format(const PolicyDiagnostic *diag)
{
    GString *out = g_string_new(NULL);
    g_string_append_printf(out, "%s:%u:%u: error: ", diag->file, diag->line, diag->column);
    /* The message may quote a string value ("a\nb" as a vm-uuid): keep it
     * on its line. */
    for (const gchar *p = diag->message; *p != '\0'; p++)
        g_string_append_c(out, g_ascii_iscntrl(*p) ? '?' : *p);
    /* Show the line as it is, but keep control bytes from reaching a
     * terminal. */
    g_string_append(out, "\n    ");
    for (const gchar *p = diag->line_text; *p != '\0'; p++)
        g_string_append_c(out, g_ascii_iscntrl(*p) && *p != '\t' ? '?' : *p);
    g_string_append(out, "\n    ");
    /* one caret column per character: UTF-8 continuation bytes take none */
    for (guint i = 1; i < diag->column && diag->line_text[i - 1] != '\0'; i++) {
        guchar c = (guchar)diag->line_text[i - 1];
        if ((c & 0xc0) != 0x80)
            g_string_append_c(out, c == '\t' ? '\t' : ' ');
    }
    g_string_append(out, "^");
    return g_string_free(out, FALSE);
}

static void policy_parser_error_at(PolicyParser *parser, guint column, const gchar *format, ...)
    G_GNUC_PRINTF(3, 4);

static PolicyDiagnostic *
policy_parser_diagnostic_new(PolicyParser *parser, guint column)
{
    PolicyDiagnostic *diag = g_new0(PolicyDiagnostic, 1);
    gsize len = parser->line_len;

    /* a CRLF line's \r belongs to its line ending, not to the shown text */
    if (len > 0 && parser->line[len - 1] == '\r')
        len--;
    diag->file = g_strdup(parser->filename);
    diag->line = parser->lineno;
    diag->column = column;
    diag->line_text = g_strndup(parser->line, len);
    return diag;
}

static void
policy_parser_error_at(PolicyParser *parser, guint column, const gchar *format, ...)
{
    PolicyDiagnostic *diag;
    va_list args;

    if (parser->diagnostics->len >= POLICY_MAX_DIAGNOSTICS)
        return;
    diag = policy_parser_diagnostic_new(parser, column);
    va_start(args, format);
    diag->message = g_strdup_vprintf(format, args);
    va_end(args);
    g_ptr_array_add(parser->diagnostics, diag);
}

static const PolicyToken *
policy_parser_peek(PolicyParser *parser)
{
    if (parser->pos >= parser->tokens->len)
        return NULL;
    return &g_array_index(parser->tokens, PolicyToken, parser->pos);
}

static const PolicyToken *
policy_parser_next(PolicyParser *parser)
{
    const PolicyToken *token = policy_parser_peek(parser);
    if (token != NULL)
        parser->pos++;
    return token;
}

/* Where "end of line" is: just past the last token (a trailing comment is
 * not where the rule ended). */
static guint
policy_parser_eol_column(PolicyParser *parser)
{
    if (parser->tokens->len == 0)
        return 1;
    return g_array_index(parser->tokens, PolicyToken, parser->tokens->len - 1).end;
}

static void
policy_parser_expected(PolicyParser *parser, const PolicyToken *got, const gchar *what)
{
    if (got == NULL) {
        policy_parser_error_at(parser, policy_parser_eol_column(parser),
                               "expected %s, got end of line", what);
        return;
    }
    g_autofree gchar *desc = policy_token_describe(got);
    policy_parser_error_at(parser, got->column, "expected %s, got %s", what, desc);
}

static gboolean
policy_token_is_word(const PolicyToken *token, const gchar *word)
{
    return token != NULL && token->kind == POLICY_TOKEN_WORD && g_strcmp0(token->text, word) == 0;
}

/* A value: a quoted string, or a bare word for convenience (1-1.4). */
static const PolicyToken *
policy_parser_value(PolicyParser *parser, const gchar *what)
{
    const PolicyToken *token = policy_parser_next(parser);
    if (token == NULL || (token->kind != POLICY_TOKEN_STRING && token->kind != POLICY_TOKEN_WORD)) {
        policy_parser_expected(parser, token, what);
        return NULL;
    }
    return token;
}

static gint
policy_parse_hex_field(const gchar *text, gsize len, guint max_digits)
{
    gint value = 0;
    if (len == 1 && text[0] == '*')
        return -1;
    if (len == 0 || len > max_digits)
        return -2;
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isxdigit(text[i]))
            return -2;
        value = value * 16 + g_ascii_xdigit_value(text[i]);
    }
    return value;
}

gboolean
policy_parse_id(const gchar *text, gint32 *vendor_id, gint32 *product_id)
{
    const gchar *colon = strchr(text, ':');
    gint vid, pid;

    if (colon == NULL)
        return FALSE;
    vid = policy_parse_hex_field(text, (gsize)(colon - text), 4);
    pid = policy_parse_hex_field(colon + 1, strlen(colon + 1), 4);
    if (vid == -2 || pid == -2)
        return FALSE;
    /* "*:0001" means nothing useful: a product id is only meaningful with
     * its vendor. */
    if (vid == -1 && pid != -1)
        return FALSE;
    *vendor_id = vid;
    *product_id = pid;
    return TRUE;
}

/* "08", "08:*:*", "03:01:02"; @allow_short accepts a lone class byte. */
static gboolean
policy_parse_class(const gchar *text, gboolean allow_short, PolicyClassPattern *pattern)
{
    g_auto(GStrv) parts = g_strsplit(text, ":", -1);
    guint n = g_strv_length(parts);
    gint values[3] = {-1, -1, -1};

    if (n != 3 && !(allow_short && n == 1))
        return FALSE;
    for (guint i = 0; i < n; i++) {
        values[i] = policy_parse_hex_field(parts[i], strlen(parts[i]), 2);
        if (values[i] == -2 || (strlen(parts[i]) == 1 && parts[i][0] != '*'))
            return FALSE;
    }
    /* a subclass means nothing without its class */
    if ((values[0] == -1 && values[1] != -1) || (values[1] == -1 && values[2] != -1))
        return FALSE;
    pattern->klass = (gint16)values[0];
    pattern->subclass = (gint16)values[1];
    pattern->protocol = (gint16)values[2];
    return TRUE;
}

static void
policy_rule_free(gpointer data)
{
    PolicyRule *rule = data;
    policy_glob_clear(&rule->serial);
    policy_glob_clear(&rule->name);
    policy_glob_clear(&rule->port);
    policy_glob_clear(&rule->target);
    policy_glob_clear(&rule->gateway);
    g_free(rule->hash);
    if (rule->interfaces != NULL)
        g_array_unref(rule->interfaces);
    g_free(rule->user);
    g_free(rule->group);
    g_free(rule->metadata_pool);
    g_free(rule);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PolicyRule, policy_rule_free)

static void
policy_pool_free(gpointer data)
{
    PolicyPool *pool = data;
    g_free(pool->name);
    policy_glob_clear(&pool->vms);
    g_free(pool);
}

typedef struct {
    const gchar *keyword;
    PolicyMatchFlags flag;
} PolicyMatcherName;

static const PolicyMatcherName policy_matchers[] = {
    {"id", POLICY_MATCH_ID},
    {"serial", POLICY_MATCH_SERIAL},
    {"name", POLICY_MATCH_NAME},
    {"via-port", POLICY_MATCH_PORT},
    {"with-interface", POLICY_MATCH_INTERFACE},
    {"class", POLICY_MATCH_CLASS},
    {"hash", POLICY_MATCH_HASH},
    {"user", POLICY_MATCH_USER},
    {"group", POLICY_MATCH_GROUP},
    {"on", POLICY_MATCH_GATEWAY}, /* on gateway "GLOB" */
};

/* What each rule may say after its matchers, for "expected …" messages. */
#define POLICY_EXPECT_MATCHERS      "id, serial, name, via-port, with-interface, class, hash"
#define POLICY_EXPECT_HOST_MATCHERS "a matcher (" POLICY_EXPECT_MATCHERS ", on gateway)"

/* A gateway name glob: what policy_gateway_name_is_valid() allows, plus
 * the wildcards. Anything else could never match a gateway's name. */
static gboolean
policy_gateway_glob_is_valid(const gchar *text)
{
    gsize len = strlen(text);
    return len > 0 && len <= POLICY_GATEWAY_NAME_MAX &&
           strspn(text, POLICY_GATEWAY_NAME_CHARS "*?") == len;
}

/* Reads a gateway name glob, for `on gateway` and `to gateway`. */
static const PolicyToken *
policy_parser_gateway_glob(PolicyParser *parser)
{
    const PolicyToken *value = policy_parser_value(parser, "a quoted gateway name glob");

    if (value == NULL)
        return NULL;
    if (!policy_gateway_glob_is_valid(value->text)) {
        policy_parser_error_at(parser, value->column,
                               "\"%s\" is not a gateway name glob (letters, digits, '.', '_', '-' "
                               "and the wildcards '*' and '?', at most %d bytes)",
                               value->text, POLICY_GATEWAY_NAME_MAX);
        return NULL;
    }
    return value;
}

static gboolean
policy_parse_set_op(const gchar *word, PolicySetOp *op)
{
    static const struct {
        const gchar *word;
        PolicySetOp op;
    } ops[] = {
        {"one-of", POLICY_SET_ONE_OF},
        {"all-of", POLICY_SET_ALL_OF},
        {"none-of", POLICY_SET_NONE_OF},
        {"match-all", POLICY_SET_MATCH_ALL},
    };
    for (guint i = 0; i < G_N_ELEMENTS(ops); i++) {
        if (g_strcmp0(word, ops[i].word) == 0) {
            *op = ops[i].op;
            return TRUE;
        }
    }
    return FALSE;
}

#define POLICY_EXPECT_INTERFACE "an interface pattern like 08:*:* or 03:01:01"

static gboolean
policy_parse_interfaces(PolicyParser *parser, PolicyRule *rule)
{
    const PolicyToken *token = policy_parser_next(parser);
    PolicyClassPattern pattern;

    rule->interface_op = POLICY_SET_ONE_OF;
    rule->interfaces = g_array_new(FALSE, FALSE, sizeof(PolicyClassPattern));
    if (token != NULL && token->kind == POLICY_TOKEN_WORD &&
        policy_parse_set_op(token->text, &rule->interface_op)) {
        token = policy_parser_next(parser);
        if (token == NULL || token->kind != POLICY_TOKEN_LBRACE) {
            policy_parser_expected(parser, token, "'{' after the set operator");
            return FALSE;
        }
    }
    if (token != NULL && token->kind == POLICY_TOKEN_LBRACE) {
        for (;;) {
            token = policy_parser_next(parser);
            if (token != NULL && token->kind == POLICY_TOKEN_RBRACE) {
                if (rule->interfaces->len == 0) {
                    policy_parser_error_at(parser, token->column, "empty interface set");
                    return FALSE;
                }
                return TRUE;
            }
            if (token == NULL || token->kind != POLICY_TOKEN_WORD ||
                !policy_parse_class(token->text, FALSE, &pattern)) {
                policy_parser_expected(parser, token, POLICY_EXPECT_INTERFACE " or '}'");
                return FALSE;
            }
            g_array_append_val(rule->interfaces, pattern);
        }
    }
    if (token == NULL || token->kind != POLICY_TOKEN_WORD ||
        !policy_parse_class(token->text, FALSE, &pattern)) {
        policy_parser_expected(parser, token, POLICY_EXPECT_INTERFACE " or a '{ … }' set");
        return FALSE;
    }
    g_array_append_val(rule->interfaces, pattern);
    return TRUE;
}

/* Parses one matcher whose keyword was just read. */
static gboolean
policy_parse_matcher(PolicyParser *parser, const PolicyToken *keyword, PolicyMatchFlags flag,
                     PolicyRule *rule)
{
    const PolicyToken *value;

    if (rule->matchers & flag) {
        policy_parser_error_at(parser, keyword->column, "'%s' given twice in one rule",
                               policy_matcher_name(flag));
        return FALSE;
    }
    rule->matchers |= flag;

    switch (flag) {
    case POLICY_MATCH_ID:
        value = policy_parser_next(parser);
        if (value == NULL || value->kind != POLICY_TOKEN_WORD ||
            !policy_parse_id(value->text, &rule->vendor_id, &rule->product_id)) {
            policy_parser_expected(parser, value, "VID:PID like 0529:0001, 0529:* or *:*");
            return FALSE;
        }
        return TRUE;
    case POLICY_MATCH_CLASS:
        value = policy_parser_next(parser);
        if (value == NULL || value->kind != POLICY_TOKEN_WORD ||
            !policy_parse_class(value->text, TRUE, &rule->device_class)) {
            policy_parser_expected(parser, value, "a device class like 08 or 0e:01:*");
            return FALSE;
        }
        return TRUE;
    case POLICY_MATCH_INTERFACE:
        return policy_parse_interfaces(parser, rule);
    case POLICY_MATCH_GATEWAY:
        value = policy_parser_next(parser);
        if (!policy_token_is_word(value, "gateway")) {
            policy_parser_expected(parser, value, "'gateway' after 'on' (on gateway \"GLOB\")");
            return FALSE;
        }
        value = policy_parser_gateway_glob(parser);
        if (value == NULL)
            return FALSE;
        policy_glob_init(&rule->gateway, value->text);
        return TRUE;
    case POLICY_MATCH_SERIAL:
    case POLICY_MATCH_NAME:
    case POLICY_MATCH_PORT:
    case POLICY_MATCH_HASH:
    case POLICY_MATCH_USER:
    case POLICY_MATCH_GROUP:
        break;
    }

    value = policy_parser_value(parser, flag == POLICY_MATCH_PORT ? "a port path like \"1-1.4\""
                                                                  : "a quoted string");
    if (value == NULL)
        return FALSE;
    if (value->text[0] == '\0' && flag != POLICY_MATCH_SERIAL) {
        policy_parser_error_at(parser, value->column, "'%s' needs a non-empty value",
                               keyword->text);
        return FALSE;
    }
    switch (flag) {
    case POLICY_MATCH_SERIAL:
        policy_glob_init(&rule->serial, value->text);
        break;
    case POLICY_MATCH_NAME:
        policy_glob_init(&rule->name, value->text);
        break;
    case POLICY_MATCH_PORT:
        policy_glob_init(&rule->port, value->text);
        break;
    case POLICY_MATCH_HASH:
        rule->hash = g_strdup(value->text);
        break;
    case POLICY_MATCH_USER:
        rule->user = g_strdup(value->text);
        break;
    case POLICY_MATCH_GROUP:
        rule->group = g_strdup(value->text);
        break;
    case POLICY_MATCH_ID:
    case POLICY_MATCH_CLASS:
    case POLICY_MATCH_INTERFACE:
    case POLICY_MATCH_GATEWAY:
        break;
    }
    return TRUE;
}

/* A pool named at @value: an error at the end unless it is defined. */
static void
policy_parser_add_pool_ref(PolicyParser *parser, const PolicyToken *value)
{
    PolicyDiagnostic *ref = policy_parser_diagnostic_new(parser, value->column);

    ref->message = g_strdup(value->text);
    g_ptr_array_add(parser->pool_refs, ref);
}

static gboolean
policy_parse_target(PolicyParser *parser, PolicyRule *rule)
{
    const PolicyToken *kind = policy_parser_next(parser);
    const PolicyToken *value;

    if (rule->action == POLICY_ACTION_EXPORT) {
        if (!policy_token_is_word(kind, "gateway")) {
            policy_parser_expected(parser, kind,
                                   "a target: gateway \"GLOB\" (an export rule offers this "
                                   "host's devices to other gateways, not to VMs or pools)");
            return FALSE;
        }
        value = policy_parser_gateway_glob(parser);
        if (value == NULL)
            return FALSE;
        rule->target_kind = POLICY_TARGET_GATEWAY;
        policy_glob_init(&rule->target, value->text);
        return TRUE;
    }
    if (policy_token_is_word(kind, "gateway")) {
        policy_parser_error_at(parser, kind->column,
                               "'to gateway' belongs to export rules: %s rules give a device to "
                               "a VM on this host (to offer it to other gateways: export "
                               "MATCHERS to gateway \"GLOB\")",
                               rule->action == POLICY_ACTION_ASSIGN  ? "assign"
                               : rule->action == POLICY_ACTION_SHARE ? "share"
                                                                     : "allow metadata");
        return FALSE;
    }
    if (policy_token_is_word(kind, "vm"))
        rule->target_kind = POLICY_TARGET_VM;
    else if (policy_token_is_word(kind, "vm-uuid"))
        rule->target_kind = POLICY_TARGET_VM_UUID;
    else if (policy_token_is_word(kind, "pool") && rule->action == POLICY_ACTION_ASSIGN)
        rule->target_kind = POLICY_TARGET_POOL;
    else {
        policy_parser_expected(parser, kind,
                               rule->action == POLICY_ACTION_ASSIGN
                                   ? "a target: vm \"NAME\", vm-uuid \"UUID\" or pool \"NAME\""
                                   : "a target: vm \"NAME\" or vm-uuid \"UUID\"");
        return FALSE;
    }
    value = policy_parser_value(parser, "a quoted name");
    if (value == NULL)
        return FALSE;
    if (value->text[0] == '\0') {
        policy_parser_error_at(parser, value->column, "the target name is empty");
        return FALSE;
    }
    if (rule->target_kind == POLICY_TARGET_VM_UUID) {
        if (!g_uuid_string_is_valid(value->text)) {
            policy_parser_error_at(parser, value->column,
                                   "'%s' is not a UUID (like 8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5a)",
                                   value->text);
            return FALSE;
        }
        g_autofree gchar *lower = g_ascii_strdown(value->text, -1);
        rule->target.text = g_steal_pointer(&lower);
        return TRUE;
    }
    if (rule->target_kind == POLICY_TARGET_POOL)
        policy_parser_add_pool_ref(parser, value);
    policy_glob_init(&rule->target, value->text);
    return TRUE;
}

static gboolean
policy_parse_flags(PolicyParser *parser, PolicyRule *rule)
{
    gboolean seen = FALSE;
    const PolicyToken *token;

    while ((token = policy_parser_next(parser)) != NULL) {
        gboolean required = policy_token_is_word(token, "required");
        if (policy_token_is_word(token, "to")) {
            policy_parser_error_at(parser, token->column,
                                   "a rule has one target (write one rule per target)");
            return FALSE;
        }
        if (required && rule->action == POLICY_ACTION_EXPORT) {
            policy_parser_error_at(parser, token->column,
                                   "'required' cannot apply to export rules: it keeps a VM from "
                                   "starting without the device, and an export rule gives no VM "
                                   "a device");
            return FALSE;
        }
        if (!required && !policy_token_is_word(token, "optional")) {
            policy_parser_expected(parser, token, "'required', 'optional' or end of line");
            return FALSE;
        }
        if (seen) {
            policy_parser_error_at(parser, token->column,
                                   "only one of 'required' and 'optional' may be given");
            return FALSE;
        }
        seen = TRUE;
        rule->required = required;
    }
    return TRUE;
}

static PolicyRule *
policy_rule_new(PolicyParser *parser, PolicyAction action)
{
    PolicyRule *rule = g_new0(PolicyRule, 1);

    rule->action = action;
    rule->line = parser->lineno;
    rule->vendor_id = -1;
    rule->product_id = -1;
    return rule;
}

/* Reads the matchers of @rule up to the first token that is none; FALSE
 * after an error. */
static gboolean
policy_parse_matchers(PolicyParser *parser, const PolicyToken *action_token, PolicyRule *rule)
{
    PolicyAction action = rule->action;
    const PolicyToken *token;

    while ((token = policy_parser_peek(parser)) != NULL) {
        PolicyMatchFlags flag = 0;
        if (token->kind == POLICY_TOKEN_WORD) {
            for (guint i = 0; i < G_N_ELEMENTS(policy_matchers); i++) {
                if (g_strcmp0(token->text, policy_matchers[i].keyword) == 0)
                    flag = policy_matchers[i].flag;
            }
        }
        if (flag == 0)
            break;
        if (flag == POLICY_MATCH_GATEWAY && action == POLICY_ACTION_EXPORT) {
            policy_parser_error_at(parser, token->column,
                                   "'on gateway' cannot apply to export rules: they offer this "
                                   "host's own devices, and a device imported from another "
                                   "gateway is not exported again");
            return FALSE;
        }
        if (flag == POLICY_MATCH_GATEWAY && action == POLICY_ACTION_SHARE) {
            policy_parser_error_at(parser, token->column,
                                   "'on gateway' cannot apply to share rules: a lent device comes "
                                   "from a workstation user's client, not from a gateway");
            return FALSE;
        }
        if ((flag == POLICY_MATCH_USER || flag == POLICY_MATCH_GROUP) &&
            action != POLICY_ACTION_SHARE) {
            policy_parser_error_at(parser, token->column,
                                   "'%s' belongs to share rules (a workstation user lends a "
                                   "device); %s rules match devices only",
                                   token->text, action_token->text);
            return FALSE;
        }
        if ((flag & POLICY_MATCH_CLAIMED) && action == POLICY_ACTION_SHARE) {
            policy_parser_error_at(parser, token->column,
                                   "'%s' cannot apply to share rules: a lent device's serial, "
                                   "name, port and descriptor hash are only what its client "
                                   "claims (match it by id, class or with-interface)",
                                   token->text);
            return FALSE;
        }
        policy_parser_next(parser);
        if (!policy_parse_matcher(parser, token, flag, rule))
            return FALSE;
    }
    return TRUE;
}

static PolicyRule *
policy_parse_rule(PolicyParser *parser, const PolicyToken *action_token, PolicyAction action)
{
    g_autoptr(PolicyRule) rule = policy_rule_new(parser, action);
    const PolicyToken *token;

    if (!policy_parse_matchers(parser, action_token, rule))
        return NULL;
    token = policy_parser_peek(parser);
    if (action == POLICY_ACTION_DENY) {
        if (token != NULL) {
            policy_parser_expected(parser, token, POLICY_EXPECT_HOST_MATCHERS " or end of line");
            return NULL;
        }
        return g_steal_pointer(&rule);
    }

    if (action == POLICY_ACTION_SHARE &&
        !(rule->matchers & (POLICY_MATCH_USER | POLICY_MATCH_GROUP))) {
        policy_parser_error_at(parser,
                               token != NULL ? token->column : policy_parser_eol_column(parser),
                               "a share rule needs user \"NAME\" or group \"NAME\" (who may lend)");
        return NULL;
    }
    if (!policy_token_is_word(token, "to")) {
        const gchar *what = "a matcher, user, group or 'to'";
        if (action == POLICY_ACTION_ASSIGN)
            what = POLICY_EXPECT_HOST_MATCHERS " or 'to'";
        else if (action == POLICY_ACTION_EXPORT)
            what = "a matcher (" POLICY_EXPECT_MATCHERS ") or 'to'";
        policy_parser_expected(parser, token, what);
        return NULL;
    }
    policy_parser_next(parser);
    if (!policy_parse_target(parser, rule))
        return NULL;
    if (!policy_parse_flags(parser, rule))
        return NULL;
    return g_steal_pointer(&rule);
}

/* allow metadata pool "NAME" for VM-TARGET
 * allow metadata MATCHERS for VM-TARGET
 * A VM whose libvirt metadata asks for a key of the pool, or for a device
 * the matchers match, gets it (docs/policy.md, "Metadata"). */
static PolicyRule *
policy_parse_allow(PolicyParser *parser, const PolicyToken *action_token)
{
    g_autoptr(PolicyRule) rule = policy_rule_new(parser, POLICY_ACTION_ALLOW_METADATA);
    const PolicyToken *token = policy_parser_next(parser);
    const PolicyToken *value;

    if (!policy_token_is_word(token, "metadata")) {
        policy_parser_expected(parser, token,
                               "'metadata' (allow metadata pool \"NAME\" for vm \"GLOB\", or "
                               "allow metadata MATCHERS for vm \"GLOB\")");
        return NULL;
    }
    token = policy_parser_peek(parser);
    if (policy_token_is_word(token, "pool")) {
        policy_parser_next(parser);
        value = policy_parser_value(parser, "a quoted pool name");
        if (value == NULL)
            return NULL;
        if (value->text[0] == '\0') {
            policy_parser_error_at(parser, value->column, "the pool name is empty");
            return NULL;
        }
        policy_parser_add_pool_ref(parser, value);
        rule->metadata_pool = g_strdup(value->text);
        token = policy_parser_peek(parser);
        if (token != NULL && !policy_token_is_word(token, "for")) {
            policy_parser_expected(parser, token,
                                   "'for' (a pool wish takes no matchers: the pool's assign "
                                   "rules say which devices are in it)");
            return NULL;
        }
    } else {
        if (!policy_parse_matchers(parser, action_token, rule))
            return NULL;
        token = policy_parser_peek(parser);
        if (rule->matchers == 0 && (token == NULL || policy_token_is_word(token, "for"))) {
            policy_parser_error_at(parser,
                                   token != NULL ? token->column : policy_parser_eol_column(parser),
                                   "an allow metadata rule needs pool \"NAME\" or a matcher (write "
                                   "id *:* to let the VMs ask for any device)");
            return NULL;
        }
    }
    if (!policy_token_is_word(token, "for")) {
        policy_parser_expected(
            parser, token,
            rule->metadata_pool != NULL ? "'for'" : POLICY_EXPECT_HOST_MATCHERS " or 'for'");
        return NULL;
    }
    policy_parser_next(parser);
    if (!policy_parse_target(parser, rule))
        return NULL;
    token = policy_parser_next(parser);
    if (token != NULL) {
        policy_parser_expected(parser, token,
                               "end of line (a VM's wish is never required: it asks for itself)");
        return NULL;
    }
    return g_steal_pointer(&rule);
}

static void
policy_parse_pool(PolicyParser *parser, Policy *policy)
{
    const PolicyToken *name = policy_parser_value(parser, "a quoted pool name");
    const PolicyToken *token;
    const PolicyToken *vms;
    PolicyPool *pool;

    if (name == NULL)
        return;
    if (name->text[0] == '\0') {
        policy_parser_error_at(parser, name->column, "the pool name is empty");
        return;
    }
    token = policy_parser_next(parser);
    if (!policy_token_is_word(token, "vms")) {
        policy_parser_expected(parser, token, "'vms' and a VM name glob");
        return;
    }
    vms = policy_parser_value(parser, "a quoted VM name glob like \"cad-*\"");
    if (vms == NULL)
        return;
    if (vms->text[0] == '\0') {
        policy_parser_error_at(parser, vms->column, "the VM name glob is empty");
        return;
    }
    token = policy_parser_next(parser);
    if (token != NULL) {
        policy_parser_expected(parser, token, "end of line after the pool definition");
        return;
    }
    pool = g_hash_table_lookup(policy->pools, name->text);
    if (pool != NULL) {
        policy_parser_error_at(parser, name->column, "pool \"%s\" is already defined at line %u",
                               name->text, pool->line);
        return;
    }
    pool = g_new0(PolicyPool, 1);
    pool->name = g_strdup(name->text);
    pool->line = parser->lineno;
    policy_glob_init(&pool->vms, vms->text);
    g_hash_table_insert(policy->pools, pool->name, pool);
}

static void
policy_parse_line(PolicyParser *parser, Policy *policy)
{
    const PolicyToken *first = policy_parser_next(parser);
    PolicyAction action;
    PolicyRule *rule;

    if (first == NULL)
        return;
    if (policy_token_is_word(first, "pool")) {
        policy_parse_pool(parser, policy);
        return;
    }
    if (policy_token_is_word(first, "assign"))
        action = POLICY_ACTION_ASSIGN;
    else if (policy_token_is_word(first, "deny"))
        action = POLICY_ACTION_DENY;
    else if (policy_token_is_word(first, "share"))
        action = POLICY_ACTION_SHARE;
    else if (policy_token_is_word(first, "export"))
        action = POLICY_ACTION_EXPORT;
    else if (policy_token_is_word(first, "allow"))
        action = POLICY_ACTION_ALLOW_METADATA;
    else {
        policy_parser_expected(parser, first, "a rule: assign, deny, share, export, allow or pool");
        return;
    }
    if (action == POLICY_ACTION_ALLOW_METADATA)
        rule = policy_parse_allow(parser, first);
    else
        rule = policy_parse_rule(parser, first, action);
    if (rule == NULL)
        return;
    g_ptr_array_add(policy->rules, rule);
}

static Policy *
policy_new(const gchar *filename)
{
    Policy *policy = g_new0(Policy, 1);
    policy->ref_count = 1;
    policy->filename = g_strdup(filename);
    policy->rules = g_ptr_array_new_with_free_func(policy_rule_free);
    policy->pools = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, policy_pool_free);
    return policy;
}

Policy *
policy_ref(Policy *policy)
{
    g_return_val_if_fail(policy != NULL, NULL);
    g_atomic_int_inc(&policy->ref_count);
    return policy;
}

void
policy_unref(Policy *policy)
{
    if (policy == NULL || !g_atomic_int_dec_and_test(&policy->ref_count))
        return;
    g_free(policy->filename);
    g_ptr_array_unref(policy->rules);
    g_hash_table_unref(policy->pools);
    g_free(policy);
}

guint
policy_get_rule_count(const Policy *policy)
{
    return policy->rules->len;
}

const gchar *
policy_get_filename(const Policy *policy)
{
    return policy->filename;
}

static void
policy_parser_resolve_pools(PolicyParser *parser, Policy *policy)
{
    for (guint i = 0; i < parser->pool_refs->len; i++) {
        PolicyDiagnostic *ref = g_ptr_array_index(parser->pool_refs, i);
        g_autofree gchar *pool = NULL;

        if (g_hash_table_contains(policy->pools, ref->message))
            continue;
        if (parser->diagnostics->len >= POLICY_MAX_DIAGNOSTICS)
            return;
        pool = g_steal_pointer(&ref->message);
        ref->message = g_strdup_printf("pool \"%s\" is not defined (add: pool \"%s\" vms \"GLOB\")",
                                       pool, pool);
        g_ptr_array_add(parser->diagnostics, g_ptr_array_steal_index(parser->pool_refs, i));
        i--;
    }
}

static gint
policy_diagnostic_compare(gconstpointer a, gconstpointer b)
{
    const PolicyDiagnostic *da = *(const PolicyDiagnostic *const *)a;
    const PolicyDiagnostic *db = *(const PolicyDiagnostic *const *)b;
    if (da->line != db->line)
        return da->line < db->line ? -1 : 1;
    return da->column < db->column ? -1 : da->column > db->column;
}

Policy *
policy_load_data(const gchar *data, gsize len, const gchar *filename, GPtrArray **diagnostics,
                 GError **error)
{
    g_autoptr(Policy) policy = NULL;
    g_autoptr(GPtrArray) diags =
        g_ptr_array_new_with_free_func((GDestroyNotify)policy_diagnostic_free);
    g_autoptr(GPtrArray) pool_refs =
        g_ptr_array_new_with_free_func((GDestroyNotify)policy_diagnostic_free);
    PolicyParser parser = {.filename = filename != NULL ? filename : "<policy>",
                           .diagnostics = diags,
                           .pool_refs = pool_refs};
    gsize offset = 0;

    g_return_val_if_fail(data != NULL || len == 0, NULL);

    if (len > POLICY_MAX_TEXT_SIZE) {
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_TOO_LARGE,
                    "%s: policy is %" G_GSIZE_FORMAT " bytes, more than the %d allowed",
                    parser.filename, len, POLICY_MAX_TEXT_SIZE);
        return NULL;
    }

    policy = policy_new(parser.filename);
    while (offset < len) {
        const gchar *line = data + offset;
        const gchar *nl = memchr(line, '\n', len - offset);
        gsize line_len = nl != NULL ? (gsize)(nl - line) : len - offset;
        g_autoptr(GArray) tokens = policy_token_array_new();
        guint error_column = 0;
        g_autofree gchar *error_message = NULL;

        parser.lineno++;
        parser.line = line;
        parser.line_len = line_len;
        parser.tokens = tokens;
        parser.pos = 0;
        if (!policy_lex_line(line, line_len, tokens, &error_column, &error_message))
            policy_parser_error_at(&parser, error_column, "%s", error_message);
        else
            policy_parse_line(&parser, policy);
        parser.tokens = NULL;
        offset += line_len + (nl != NULL ? 1 : 0);
    }
    policy_parser_resolve_pools(&parser, policy);
    g_ptr_array_sort(diags, policy_diagnostic_compare);

    if (diags->len > 0) {
        const PolicyDiagnostic *first = g_ptr_array_index(diags, 0);
        if (diags->len == 1)
            g_set_error(error, POLICY_ERROR, POLICY_ERROR_PARSE, "%s:%u:%u: %s", first->file,
                        first->line, first->column, first->message);
        else
            g_set_error(error, POLICY_ERROR, POLICY_ERROR_PARSE,
                        "%s:%u:%u: %s (and %u more errors)", first->file, first->line,
                        first->column, first->message, diags->len - 1);
        if (diagnostics != NULL)
            *diagnostics = g_steal_pointer(&diags);
        return NULL;
    }
    if (diagnostics != NULL)
        *diagnostics = g_steal_pointer(&diags);
    return g_steal_pointer(&policy);
}

Policy *
policy_load_file(const gchar *path, GPtrArray **diagnostics, GError **error)
{
    g_autofree gchar *data = NULL;
    gsize len = 0;
    GStatBuf st;

    /* Refuse what is not a plain file of sane size before reading it: a
     * policy path pointing at /dev/zero or a huge log must not be slurped. */
    if (g_stat(path, &st) != 0) {
        int saved = errno;
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(saved),
                    "cannot read policy %s: %s", path, g_strerror(saved));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "cannot read policy %s: not a regular file", path);
        return NULL;
    }
    if (st.st_size > POLICY_MAX_TEXT_SIZE) {
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_TOO_LARGE,
                    "%s: policy is %" G_GINT64_FORMAT " bytes, more than the %d allowed", path,
                    (gint64)st.st_size, POLICY_MAX_TEXT_SIZE);
        return NULL;
    }
    if (!g_file_get_contents(path, &data, &len, error)) {
        g_prefix_error(error, "cannot read policy: ");
        return NULL;
    }
    return policy_load_data(data, len, path, diagnostics, error);
}

const gchar *
policy_matcher_name(PolicyMatchFlags flag)
{
    if (flag == POLICY_MATCH_GATEWAY)
        return "on gateway";
    for (guint i = 0; i < G_N_ELEMENTS(policy_matchers); i++) {
        if (policy_matchers[i].flag == flag)
            return policy_matchers[i].keyword;
    }
    return "?";
}
