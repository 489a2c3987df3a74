/* policy_lex_line(): tokens with their exact columns, escapes, and every
 * way a line can be refused. */
#include <string.h>

#include "policy-private.h"

typedef struct {
    const gchar *name;
    const gchar *input;
    gssize len;            /* bytes of input to lex; -1: strlen(input) */
    const gchar *want;     /* tokens, see lex_tokens_to_string(); NULL: an error */
    guint want_column;     /* the error's column */
    const gchar *want_msg; /* a substring of the error message */
} LexCase;

/* "W(assign)1-7 S(\"cad\\n\")8-15 {9-10 }10-11": kind, text (strings
 * g_strescape()d), column and end column of each token. */
static gchar *
lex_tokens_to_string(GArray *tokens)
{
    GString *out = g_string_new(NULL);
    for (guint i = 0; i < tokens->len; i++) {
        const PolicyToken *token = &g_array_index(tokens, PolicyToken, i);
        g_autofree gchar *escaped = g_strescape(token->text, NULL);
        if (i > 0)
            g_string_append_c(out, ' ');
        switch (token->kind) {
        case POLICY_TOKEN_WORD:
            g_string_append_printf(out, "W(%s)", token->text);
            break;
        case POLICY_TOKEN_STRING:
            g_string_append_printf(out, "S(%s)", escaped);
            break;
        case POLICY_TOKEN_LBRACE:
            g_assert_cmpstr(token->text, ==, "{");
            g_string_append(out, "{");
            break;
        case POLICY_TOKEN_RBRACE:
            g_assert_cmpstr(token->text, ==, "}");
            g_string_append(out, "}");
            break;
        }
        g_string_append_printf(out, "%u-%u", token->column, token->end);
    }
    return g_string_free(out, FALSE);
}

static const LexCase lex_cases[] = {
    /* words and whitespace */
    {.name = "empty", .input = "", .want = ""},
    {.name = "blanks-only", .input = " \t \r", .want = ""},
    {.name = "words",
     .input = "assign id 0529:0001",
     .want = "W(assign)1-7 W(id)8-10 W(0529:0001)11-20"},
    {.name = "word-charset",
     .input = "a_b-c.d:e*f?g/h+i@J9",
     .want = "W(a_b-c.d:e*f?g/h+i@J9)1-21"},
    {.name = "leading-and-trailing-blanks", .input = "   deny   ", .want = "W(deny)4-8"},
    {.name = "tabs-are-one-column",
     .input = "\tassign\tid\t\t0529:*",
     .want = "W(assign)2-8 W(id)9-11 W(0529:*)13-19"},
    {.name = "crlf-tail", .input = "deny id 0781:*\r", .want = "W(deny)1-5 W(id)6-8 W(0781:*)9-15"},
    {.name = "length-is-honoured", .input = "assign id", .len = 6, .want = "W(assign)1-7"},
    /* strings */
    {.name = "string", .input = "vm \"cad-01\"", .want = "W(vm)1-3 S(cad-01)4-12"},
    {.name = "empty-string", .input = "serial \"\"", .want = "W(serial)1-7 S()8-10"},
    {.name = "string-glued-to-word", .input = "vm\"x\"y", .want = "W(vm)1-3 S(x)3-6 W(y)6-7"},
    {.name = "adjacent-strings", .input = "\"a\"\"b\"", .want = "S(a)1-4 S(b)4-7"},
    {.name = "escape-quote-backslash", .input = "\"a\\\"b\\\\c\"", .want = "S(a\\\"b\\\\c)1-10"},
    {.name = "escape-newline-tab", .input = "\"x\\ny\\tz\"", .want = "S(x\\ny\\tz)1-10"},
    {.name = "escape-hex", .input = "\"\\x41\\x7e\\x4A\"", .want = "S(A~J)1-15"},
    {.name = "escape-hex-utf8", .input = "\"Caf\\xc3\\xa9\"", .want = "S(Caf\\303\\251)1-14"},
    {.name = "utf8-in-string",
     .input = "name \"Café\" x",
     .want = "W(name)1-5 S(Caf\\303\\251)6-13 W(x)14-15"},
    {.name = "spaces-in-string", .input = "\"  a b  \"", .want = "S(  a b  )1-10"},
    /* escape errors: the column is the backslash's */
    {.name = "escape-x00",
     .input = "serial \"A\\x00\"",
     .want_column = 10,
     .want_msg = "\\x00 is not allowed"},
    {.name = "escape-x-one-digit",
     .input = "\"\\x4\"",
     .want_column = 2,
     .want_msg = "expected two hex digits after \\x"},
    {.name = "escape-x-not-hex",
     .input = "\"ab\\xg1\"",
     .want_column = 4,
     .want_msg = "expected two hex digits"},
    {.name = "escape-x-at-end",
     .input = "\"\\x",
     .want_column = 2,
     .want_msg = "expected two hex digits"},
    {.name = "escape-unknown",
     .input = "x \"a\\qb\"",
     .want_column = 5,
     .want_msg = "unknown escape '\\q' (use \\\" \\\\ \\n \\t \\xHH)"},
    {.name = "escape-unknown-unprintable",
     .input = "\"\\\x01\"",
     .want_column = 2,
     .want_msg = "unknown escape '\\?'"},
    {.name = "escape-r-unknown",
     .input = "\"\\r\"",
     .want_column = 2,
     .want_msg = "unknown escape '\\r'"},
    /* unterminated strings: the column is the opening quote's */
    {.name = "unterminated",
     .input = "vm \"cad-01",
     .want_column = 4,
     .want_msg = "unterminated string (missing closing '\"')"},
    {.name = "unterminated-after-escaped-quote",
     .input = "\"ab\\\"",
     .want_column = 1,
     .want_msg = "unterminated string"},
    {.name = "backslash-at-end",
     .input = "a \"b\\",
     .want_column = 3,
     .want_msg = "unterminated string"},
    {.name = "lone-quote", .input = "\"", .want_column = 1, .want_msg = "unterminated string"},
    {.name = "string-cut-by-length",
     .input = "\"abc\"",
     .len = 4,
     .want_column = 1,
     .want_msg = "unterminated"},
    /* braces */
    {.name = "braces-glued",
     .input = "{08:*:* 03:01:01}",
     .want = "{1-2 W(08:*:*)2-8 W(03:01:01)9-17 }17-18"},
    {.name = "braces-spaced",
     .input = "with-interface { 08:*:* }",
     .want = "W(with-interface)1-15 {16-17 W(08:*:*)18-24 }25-26"},
    {.name = "braces-nested", .input = "{{}}", .want = "{1-2 {2-3 }3-4 }4-5"},
    /* comments */
    {.name = "comment-line", .input = "# assign id 0529:0001", .want = ""},
    {.name = "comment-indented", .input = "  \t# x", .want = ""},
    {.name = "comment-after-rule", .input = "deny # \"unterminated", .want = "W(deny)1-5"},
    {.name = "comment-glued", .input = "deny#x", .want = "W(deny)1-5"},
    {.name = "hash-inside-string", .input = "\"a#b\" # c", .want = "S(a#b)1-6"},
    {.name = "comment-with-bad-bytes",
     .input = "deny # caf\xc3\xa9 \x01 \xff",
     .want = "W(deny)1-5"},
    /* bytes that are not allowed outside strings */
    {.name = "non-ascii-outside-string",
     .input = "name Café",
     .want_column = 9,
     .want_msg = "unexpected byte 0xc3 (non-ASCII text belongs inside a quoted string)"},
    {.name = "control-byte",
     .input = "deny\x01",
     .want_column = 5,
     .want_msg = "unexpected byte 0x01"},
    {.name = "del-byte", .input = "a \x7f", .want_column = 3, .want_msg = "unexpected byte 0x7f"},
    {.name = "semicolon",
     .input = "to vm \"x\";",
     .want_column = 10,
     .want_msg = "unexpected character ';'"},
    {.name = "comma",
     .input = "08:*:*,03:*:*",
     .want_column = 7,
     .want_msg = "unexpected character ','"},
    {.name = "nul-outside-string",
     .input = "ab\0cd",
     .len = 5,
     .want_column = 3,
     .want_msg = "NUL byte in rule text"},
    {.name = "nul-first", .input = "\0", .len = 1, .want_column = 1, .want_msg = "NUL byte"},
    {.name = "nul-inside-string",
     .input = "x \"a\0b\"",
     .len = 7,
     .want_column = 5,
     .want_msg = "NUL byte in rule text"},
    /* strings must be UTF-8, however they are written */
    {.name = "invalid-utf8-raw",
     .input = "name \"Key\xff\"",
     .want_column = 6,
     .want_msg = "string is not valid UTF-8"},
    {.name = "invalid-utf8-escaped",
     .input = "\"\\xff\"",
     .want_column = 1,
     .want_msg = "not valid UTF-8"},
    {.name = "truncated-utf8-escaped",
     .input = "a \"\\xc3\"",
     .want_column = 3,
     .want_msg = "not valid UTF-8"},
    {.name = "overlong-utf8",
     .input = "\"\xc0\xaf\"",
     .want_column = 1,
     .want_msg = "not valid UTF-8"},
};

static void
test_lex_case(gconstpointer data)
{
    const LexCase *c = data;
    g_autoptr(GArray) tokens = policy_token_array_new();
    gsize len = c->len > 0 ? (gsize)c->len : strlen(c->input);
    guint column = 0;
    g_autofree gchar *message = NULL;
    gboolean ok = policy_lex_line(c->input, len, tokens, &column, &message);

    if (c->want != NULL) {
        g_autofree gchar *got = lex_tokens_to_string(tokens);
        g_assert_null(message);
        g_assert_true(ok);
        g_assert_cmpstr(got, ==, c->want);
    } else {
        g_assert_false(ok);
        g_assert_cmpuint(column, ==, c->want_column);
        g_assert_nonnull(message);
        if (strstr(message, c->want_msg) == NULL)
            g_error("message \"%s\" lacks \"%s\"", message, c->want_msg);
    }
}

typedef struct {
    const gchar *name;
    PolicyTokenKind kind;
    const gchar *text;
    const gchar *want;
} DescribeCase;

static const DescribeCase describe_cases[] = {
    {.name = "word", .kind = POLICY_TOKEN_WORD, .text = "assign", .want = "'assign'"},
    {.name = "string", .kind = POLICY_TOKEN_STRING, .text = "cad-01", .want = "string \"cad-01\""},
    {.name = "string-escaped",
     .kind = POLICY_TOKEN_STRING,
     .text = "a\"b\nc",
     .want = "string \"a\\\"b\\nc\""},
    {.name = "lbrace", .kind = POLICY_TOKEN_LBRACE, .text = "{", .want = "'{'"},
    {.name = "rbrace", .kind = POLICY_TOKEN_RBRACE, .text = "}", .want = "'}'"},
};

static void
test_describe_case(gconstpointer data)
{
    const DescribeCase *c = data;
    PolicyToken token = {.kind = c->kind, .text = (gchar *)c->text, .column = 1, .end = 2};
    g_autofree gchar *got = policy_token_describe(&token);
    g_assert_cmpstr(got, ==, c->want);
}

/* Tokens of a line lexed after an error line are not mixed: each call
 * appends only its own. */
static void
test_lex_appends(void)
{
    g_autoptr(GArray) tokens = policy_token_array_new();
    guint column = 0;
    g_autofree gchar *message = NULL;

    g_assert_true(policy_lex_line("deny", 4, tokens, &column, &message));
    g_assert_true(policy_lex_line("id 0781:*", 9, tokens, &column, &message));
    g_assert_cmpuint(tokens->len, ==, 3);
    g_assert_cmpstr(g_array_index(tokens, PolicyToken, 2).text, ==, "0781:*");
    g_assert_cmpuint(g_array_index(tokens, PolicyToken, 2).column, ==, 4);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(lex_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/policy/lexer/%s", lex_cases[i].name);
        g_test_add_data_func(path, &lex_cases[i], test_lex_case);
    }
    for (guint i = 0; i < G_N_ELEMENTS(describe_cases); i++) {
        g_autofree gchar *path =
            g_strdup_printf("/policy/lexer/describe/%s", describe_cases[i].name);
        g_test_add_data_func(path, &describe_cases[i], test_describe_case);
    }
    g_test_add_func("/policy/lexer/appends", test_lex_appends);
    return g_test_run();
}
