/* Tokenizer for policy rule lines: bare words, quoted strings, braces and
 * comments. One rule per line, so the parser lexes a line at a time and an
 * error on one line never hides errors on the next. */
#include "policy-private.h"

void
policy_token_clear(gpointer data)
{
    PolicyToken *token = data;
    g_clear_pointer(&token->text, g_free);
}

GArray *
policy_token_array_new(void)
{
    GArray *tokens = g_array_new(FALSE, TRUE, sizeof(PolicyToken));
    g_array_set_clear_func(tokens, policy_token_clear);
    return tokens;
}

gchar *
policy_token_describe(const PolicyToken *token)
{
    switch (token->kind) {
    case POLICY_TOKEN_WORD:
        return g_strdup_printf("'%s'", token->text);
    case POLICY_TOKEN_STRING: {
        g_autofree gchar *escaped = g_strescape(token->text, NULL);
        return g_strdup_printf("string \"%s\"", escaped);
    }
    case POLICY_TOKEN_LBRACE:
        return g_strdup("'{'");
    case POLICY_TOKEN_RBRACE:
        return g_strdup("'}'");
    }
    return g_strdup("token");
}

static gboolean
policy_lex_is_word_char(guchar c)
{
    return g_ascii_isalnum(c) || c == '_' || c == '-' || c == '.' || c == ':' || c == '*' ||
           c == '?' || c == '/' || c == '+' || c == '@';
}

static gint
policy_lex_hex_value(guchar c)
{
    return g_ascii_isxdigit(c) ? g_ascii_xdigit_value(c) : -1;
}

/* Reads the string starting at line[*pos] == '"'; on success *pos is past
 * the closing quote. */
static gboolean
policy_lex_string(const gchar *line, gsize len, gsize *pos, GString *out, guint *error_column,
                  gchar **error_message)
{
    gsize start = *pos;
    gsize i = start + 1;

    while (i < len) {
        guchar c = (guchar)line[i];
        if (c == '"') {
            *pos = i + 1;
            if (!g_utf8_validate(out->str, (gssize)out->len, NULL)) {
                *error_column = (guint)start + 1;
                *error_message = g_strdup("string is not valid UTF-8 (use \\xHH only for "
                                          "ASCII-compatible bytes)");
                return FALSE;
            }
            return TRUE;
        }
        if (c == '\0') {
            *error_column = (guint)i + 1;
            *error_message = g_strdup("NUL byte in rule text");
            return FALSE;
        }
        if (c != '\\') {
            g_string_append_c(out, (gchar)c);
            i++;
            continue;
        }
        if (i + 1 >= len)
            break;
        guchar e = (guchar)line[i + 1];
        switch (e) {
        case '"':
        case '\\':
            g_string_append_c(out, (gchar)e);
            i += 2;
            break;
        case 'n':
            g_string_append_c(out, '\n');
            i += 2;
            break;
        case 't':
            g_string_append_c(out, '\t');
            i += 2;
            break;
        case 'x': {
            gint hi = i + 2 < len ? policy_lex_hex_value((guchar)line[i + 2]) : -1;
            gint lo = i + 3 < len ? policy_lex_hex_value((guchar)line[i + 3]) : -1;
            if (hi < 0 || lo < 0) {
                *error_column = (guint)i + 1;
                *error_message = g_strdup("expected two hex digits after \\x");
                return FALSE;
            }
            if (hi == 0 && lo == 0) {
                *error_column = (guint)i + 1;
                *error_message = g_strdup("\\x00 is not allowed in a string");
                return FALSE;
            }
            g_string_append_c(out, (gchar)(hi << 4 | lo));
            i += 4;
            break;
        }
        default:
            *error_column = (guint)i + 1;
            *error_message = g_strdup_printf("unknown escape '\\%c' (use \\\" \\\\ \\n \\t \\xHH)",
                                             g_ascii_isprint(e) ? e : '?');
            return FALSE;
        }
    }
    *error_column = (guint)start + 1;
    *error_message = g_strdup("unterminated string (missing closing '\"')");
    return FALSE;
}

gboolean
policy_lex_line(const gchar *line, gsize len, GArray *tokens, guint *error_column,
                gchar **error_message)
{
    gsize i = 0;

    while (i < len) {
        guchar c = (guchar)line[i];
        PolicyToken token = {.column = (guint)i + 1};

        if (c == ' ' || c == '\t' || c == '\r') {
            i++;
            continue;
        }
        if (c == '#')
            return TRUE;
        if (c == '{' || c == '}') {
            token.kind = c == '{' ? POLICY_TOKEN_LBRACE : POLICY_TOKEN_RBRACE;
            token.text = g_strndup(line + i, 1);
            i++;
            token.end = (guint)i + 1;
            g_array_append_val(tokens, token);
            continue;
        }
        if (c == '"') {
            g_autoptr(GString) str = g_string_new(NULL);
            if (!policy_lex_string(line, len, &i, str, error_column, error_message))
                return FALSE;
            token.kind = POLICY_TOKEN_STRING;
            token.text = g_string_free(g_steal_pointer(&str), FALSE);
            token.end = (guint)i + 1;
            g_array_append_val(tokens, token);
            continue;
        }
        if (policy_lex_is_word_char(c)) {
            gsize start = i;
            while (i < len && policy_lex_is_word_char((guchar)line[i]))
                i++;
            token.kind = POLICY_TOKEN_WORD;
            token.text = g_strndup(line + start, i - start);
            token.end = (guint)i + 1;
            g_array_append_val(tokens, token);
            continue;
        }
        *error_column = (guint)i + 1;
        if (c == '\0')
            *error_message = g_strdup("NUL byte in rule text");
        else if (g_ascii_isprint(c))
            *error_message = g_strdup_printf("unexpected character '%c'", c);
        else
            *error_message = g_strdup_printf("unexpected byte 0x%02x (non-ASCII text belongs "
                                             "inside a quoted string)",
                                             c);
        return FALSE;
    }
    return TRUE;
}
