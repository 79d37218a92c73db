#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "emulator/filter.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/str.h"
#include "util/xmalloc.h"

enum kind { N_AND, N_OR, N_NOT, N_CMP };
enum op { OP_EQ, OP_NE, OP_HAS, OP_LT, OP_LE, OP_GT, OP_GE, OP_REQ, OP_RNE };

struct node {
	enum kind kind;
	struct node *a, *b;
	char *field;
	enum op op;
	char *value;
	regex_t re;
};

struct filter {
	struct node *root; /* NULL: matches everything */
};

struct lexer {
	const char *start;
	const char *p;
	char **cause;
};

static void
node_free(struct node *n)
{
	if (n == NULL)
		return;
	node_free(n->a);
	node_free(n->b);
	if (n->kind == N_CMP && (n->op == OP_REQ || n->op == OP_RNE))
		regfree(&n->re);
	free(n->field);
	free(n->value);
	free(n);
}

static struct node *
node_new(enum kind kind, struct node *a, struct node *b)
{
	struct node *n = xcalloc(1, sizeof *n);

	n->kind = kind;
	n->a = a;
	n->b = b;
	return n;
}

static int
syntax(struct lexer *lx, const char *what)
{
	*lx->cause = xasprintf("invalid filter '%s': %s at position %d", lx->start, what,
	    (int)(lx->p - lx->start) + 1);
	return -EINVAL;
}

static void
skip_ws(struct lexer *lx)
{
	while (isspace((unsigned char)*lx->p))
		lx->p++;
}

/* Is the next token the keyword w (followed by a space or a parenthesis)? */
static int
keyword(struct lexer *lx, const char *w)
{
	size_t n = strlen(w);

	skip_ws(lx);
	if (strncmp(lx->p, w, n) != 0)
		return 0;
	if (lx->p[n] != '\0' && !isspace((unsigned char)lx->p[n]) && lx->p[n] != '(')
		return 0;
	lx->p += n;
	return 1;
}

static int
is_field_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

static char *
read_field(struct lexer *lx)
{
	const char *s;

	skip_ws(lx);
	s = lx->p;
	while (is_field_char(*lx->p))
		lx->p++;
	return lx->p > s ? xstrndup(s, (size_t)(lx->p - s)) : NULL;
}

/* A value, bare or quoted; raw keeps a quoted value's escapes (a regular expression's). */
static char *
read_value(struct lexer *lx, bool raw)
{
	struct buf b = BUF_INIT(64 * 1024);
	const char *s;

	skip_ws(lx);
	if (*lx->p == '"' || *lx->p == '\'') {
		char q = *lx->p++;

		for (; *lx->p != q; lx->p++) {
			if (*lx->p == '\0') {
				buf_release(&b);
				return NULL;
			}
			if (*lx->p == '\\' && lx->p[1] != '\0') {
				if (raw && lx->p[1] != q)
					buf_addch(&b, '\\');
				lx->p++;
			}
			buf_addch(&b, *lx->p);
		}
		lx->p++;
		return buf_detach(&b, NULL);
	}
	s = lx->p;
	while (*lx->p != '\0' && !isspace((unsigned char)*lx->p) && *lx->p != ')' && *lx->p != '(')
		lx->p++;
	return lx->p > s ? xstrndup(s, (size_t)(lx->p - s)) : NULL;
}

/*
 * Google's filters take RE2 syntax; regcomp takes POSIX's with GNU's
 * operators (\b \B \w \W \s \S). What RE2 writes otherwise is rewritten
 * (non-capturing groups, \d \D, lazy quantifiers, which match what greedy
 * ones do when the whole value must match); what cannot be is refused (flags,
 * Unicode classes, escapes in brackets, \A \z \Q), never matched as
 * something else. RE2's own limits keep regcomp's memory bounded: a
 * quantifier on a quantifier is an error, and repetition counts multiply to
 * at most 1,000 in all.
 */
#define RE_MAX_LEN    1024
#define RE_MAX_REPEAT 1000

/* A counted repetition "{n}", "{n,}" or "{n,m}" at p: its length and its bound; 0 if none. */
static size_t
repetition(const char *p, long *bound)
{
	char *end;
	long n = strtol(p + 1, &end, 10), m = n;

	if (!isdigit((unsigned char)p[1]))
		return 0;
	if (*end == ',') {
		m = isdigit((unsigned char)end[1]) ? strtol(end + 1, &end, 10) : n;
		if (*end != '}' || m < n)
			return 0;
	} else if (*end != '}') {
		return 0;
	}
	*bound = m > n ? m : n;
	return (size_t)(end + 1 - p);
}

static char *
re2_to_posix(const char *re, char **bad)
{
	struct buf b = BUF_INIT(64 * 1024);
	int quantified = 0; /* the last thing written: 1 a quantifier, 2 one made lazy */
	long product = 1, bound = 0;
	size_t len = 0;

	*bad = strlen(re) > RE_MAX_LEN ? xstrdup("more than 1,024 characters") : NULL;
	for (const char *p = re; *p != '\0' && *bad == NULL; p++) {
		int quant = 0;

		if (p[0] == '(' && p[1] == '?') {
			if (p[2] != ':')
				*bad = xstrdup("(?flags)");
			buf_addch(&b, '(');
			p += 2;
		} else if (p[0] == '[') {
			/* Brackets as they are, ']' first taken literally; no escapes inside. */
			const char *q = p + 1 + (p[1] == '^');

			q += *q == ']';
			while (*q != '\0' && *q != ']' && *q != '\\')
				q++;
			if (*q != ']') {
				*bad = xstrdup(
				    *q == '\\' ? "an escape in brackets" : "an unclosed '['");
				break;
			}
			buf_add(&b, p, (size_t)(q + 1 - p));
			p = q;
		} else if (p[0] == '\\' && p[1] != '\0') {
			char c = *++p;

			if (c == 'd' || c == 'D') {
				buf_addstr(&b, c == 'd' ? "[0-9]" : "[^0-9]");
			} else if (strchr("bBwWsS", c) != NULL || ispunct((unsigned char)c)) {
				buf_addch(&b, '\\');
				buf_addch(&b, c);
			} else if (c == 'n' || c == 't') {
				buf_addch(&b, c == 'n' ? '\n' : '\t');
			} else {
				*bad = xasprintf("\\%c", c);
			}
		} else if (strchr("*+?", *p) != NULL ||
		    (*p == '{' && (len = repetition(p, &bound)) > 0)) {
			quant = 1;
			if (quantified == 1 && *p == '?') {
				quantified = 2; /* lazy: the same whole-value match */
				continue;
			}
			if (quantified != 0) {
				*bad = xstrdup("a quantifier on a quantifier");
			} else if (*p == '{') {
				if (bound > RE_MAX_REPEAT || (product *= bound) > RE_MAX_REPEAT)
					*bad = xstrdup("repetitions of more than 1,000 in all");
				buf_add(&b, p, len);
				p += len - 1;
			} else {
				buf_addch(&b, *p);
			}
		} else if (*p == '{') {
			buf_addstr(&b, "\\{"); /* not a repetition: RE2 takes it literally */
		} else {
			buf_addch(&b, *p);
		}
		quantified = quant;
	}
	if (*bad != NULL) {
		buf_release(&b);
		return NULL;
	}
	return buf_detach(&b, NULL);
}

static int
compile_regex(struct lexer *lx, struct node *n)
{
	char *bad, *posix = re2_to_posix(n->value, &bad), *anchored;
	int rc;

	if (posix == NULL) {
		char *why = xasprintf(
		    "the regular expression uses %s, which cannot be evaluated here", bad);
		int error;

		free(bad);
		n->op = OP_EQ; /* nothing compiled: node_free must not regfree */
		error = syntax(lx, why);
		free(why);
		return error;
	}
	anchored = xasprintf("^(%s)$", posix);
	rc = regcomp(&n->re, anchored, REG_EXTENDED | REG_NOSUB);
	free(anchored);
	free(posix);
	if (rc != 0) {
		n->op = OP_EQ; /* nothing compiled: node_free must not regfree */
		return syntax(lx, "the regular expression does not compile");
	}
	return 0;
}

static int parse_or(struct lexer *, struct node **);

static int
parse_cmp(struct lexer *lx, struct node **out)
{
	static const struct {
		const char *text;
		enum op op;
	} ops[] = {{"!=", OP_NE}, {"<=", OP_LE}, {">=", OP_GE}, {"=", OP_EQ}, {":", OP_HAS},
	    {"<", OP_LT}, {">", OP_GT}};
	struct node *n = node_new(N_CMP, NULL, NULL);
	size_t i;

	if ((n->field = read_field(lx)) == NULL) {
		node_free(n);
		return syntax(lx, "expected a field name");
	}
	skip_ws(lx);
	for (i = 0; i < nitems(ops); i++) {
		if (strncmp(lx->p, ops[i].text, strlen(ops[i].text)) == 0) {
			lx->p += strlen(ops[i].text);
			n->op = ops[i].op;
			break;
		}
	}
	if (i == nitems(ops)) {
		node_free(n);
		if (keyword(lx, "eq") || keyword(lx, "ne"))
			return syntax(
			    lx, "the 'eq'/'ne' syntax cannot be mixed with '=' and friends");
		return syntax(lx, "expected an operator (=, !=, :, <, <=, >, >=)");
	}
	if ((n->value = read_value(lx, false)) == NULL) {
		node_free(n);
		return syntax(lx, "expected a value");
	}
	*out = n;
	return 0;
}

static int
parse_unary(struct lexer *lx, struct node **out)
{
	struct node *n;
	int error;

	skip_ws(lx);
	if (*lx->p == '-' || keyword(lx, "NOT")) {
		if (*lx->p == '-')
			lx->p++;
		if ((error = parse_unary(lx, &n)) != 0)
			return error;
		*out = node_new(N_NOT, n, NULL);
		return 0;
	}
	if (*lx->p == '(') {
		lx->p++;
		if ((error = parse_or(lx, &n)) != 0)
			return error;
		skip_ws(lx);
		if (*lx->p != ')') {
			node_free(n);
			return syntax(lx, "expected ')'");
		}
		lx->p++;
		*out = n;
		return 0;
	}
	return parse_cmp(lx, out);
}

static int
parse_and(struct lexer *lx, struct node **out)
{
	struct node *left, *right;
	int error;

	if ((error = parse_unary(lx, &left)) != 0)
		return error;
	for (;;) {
		const char *save;

		skip_ws(lx);
		if (*lx->p == '\0' || *lx->p == ')')
			break;
		save = lx->p;
		if (keyword(lx, "OR")) {
			lx->p = save;
			break;
		}
		keyword(lx, "AND");
		if ((error = parse_unary(lx, &right)) != 0) {
			node_free(left);
			return error;
		}
		left = node_new(N_AND, left, right);
	}
	*out = left;
	return 0;
}

static int
parse_or(struct lexer *lx, struct node **out)
{
	struct node *left, *right;
	int error;

	if ((error = parse_and(lx, &left)) != 0)
		return error;
	while (keyword(lx, "OR")) {
		if ((error = parse_and(lx, &right)) != 0) {
			node_free(left);
			return error;
		}
		left = node_new(N_OR, left, right);
	}
	*out = left;
	return 0;
}

/* "field eq regex field ne regex ...": terms ANDed. */
static int
parse_regex_syntax(struct lexer *lx, struct node **out)
{
	struct node *all = NULL;

	for (skip_ws(lx); *lx->p != '\0'; skip_ws(lx)) {
		struct node *n = node_new(N_CMP, NULL, NULL);
		/* gcloud writes its terms side by side in parentheses: (a eq x)(b eq y) */
		bool open = *lx->p == '(';

		if (open)
			lx->p++;
		skip_ws(lx);
		n->field = read_field(lx);
		if (n->field != NULL && keyword(lx, "eq"))
			n->op = OP_REQ;
		else if (n->field != NULL && keyword(lx, "ne"))
			n->op = OP_RNE;
		else {
			node_free(n);
			node_free(all);
			return syntax(lx,
			    "expected 'FIELD eq REGEX' or 'FIELD ne REGEX' (the two "
			    "filter syntaxes cannot be mixed)");
		}
		if ((n->value = read_value(lx, true)) == NULL || compile_regex(lx, n) != 0) {
			int error = n->value == NULL ? syntax(lx, "expected a regular expression")
			                             : -EINVAL;

			node_free(n);
			node_free(all);
			return error;
		}
		skip_ws(lx);
		if (open && *lx->p++ != ')') {
			node_free(n);
			node_free(all);
			return syntax(lx, "expected ')'");
		}
		all = all == NULL ? n : node_new(N_AND, all, n);
	}
	*out = all;
	return 0;
}

int
filter_parse(const char *s, struct filter **out, char **cause)
{
	struct lexer lx = {.start = s, .p = s, .cause = cause};
	struct filter *f = xcalloc(1, sizeof *f);
	struct lexer probe = lx;
	char *first;
	int error = 0;

	skip_ws(&lx);
	if (*lx.p == '\0') {
		*out = f;
		return 0;
	}
	/* The regex syntax starts "FIELD eq" or "FIELD ne", perhaps in parentheses. */
	skip_ws(&probe);
	if (*probe.p == '(')
		probe.p++;
	skip_ws(&probe);
	first = read_field(&probe);
	if (first != NULL && (keyword(&probe, "eq") || keyword(&probe, "ne")))
		error = parse_regex_syntax(&lx, &f->root);
	else if ((error = parse_or(&lx, &f->root)) == 0) {
		skip_ws(&lx);
		if (*lx.p != '\0') {
			error = syntax(&lx, "unexpected text");
		}
	}
	free(first);
	if (error != 0) {
		filter_free(f);
		return error;
	}
	*out = f;
	return 0;
}

void
filter_free(struct filter *f)
{
	if (f == NULL)
		return;
	node_free(f->root);
	free(f);
}

/* --- evaluation --- */

static char *
leaf_text(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return xstrdup(json_string_value(v));
	case JSON_INTEGER:
		return xasprintf("%lld", (long long)json_integer_value(v));
	case JSON_REAL:
		return xasprintf("%g", json_real_value(v));
	case JSON_TRUE:
		return xstrdup("true");
	case JSON_FALSE:
		return xstrdup("false");
	default:
		return NULL;
	}
}

/* <0, 0, >0 comparing a leaf's text with the filter's value: numbers, times, text. */
static int
compare(const char *a, const char *b)
{
	double x, y;
	int64_t t, u;

	if (parse_number(a, -1e308, 1e308, &x) == 0 && parse_number(b, -1e308, 1e308, &y) == 0)
		return x < y ? -1 : x > y;
	if (time_parse_rfc3339(a, &t) == 0 && time_parse_rfc3339(b, &u) == 0)
		return t < u ? -1 : t > u;
	return strcmp(a, b);
}

static bool
leaf_matches(const struct node *n, const json_t *leaf)
{
	char *text;
	bool ok = false;

	if (n->op == OP_HAS && strcmp(n->value, "*") == 0)
		return !json_is_null(leaf);
	if ((text = leaf_text(leaf)) == NULL)
		return false;
	switch (n->op) {
	case OP_EQ:
	case OP_NE:
		if (strchr(n->value, '*') != NULL)
			ok = fnmatch(n->value, text, 0) == 0;
		else
			ok = strcmp(text, n->value) == 0;
		break;
	case OP_HAS:
		ok = strstr(text, n->value) != NULL;
		break;
	case OP_LT:
		ok = compare(text, n->value) < 0;
		break;
	case OP_LE:
		ok = compare(text, n->value) <= 0;
		break;
	case OP_GT:
		ok = compare(text, n->value) > 0;
		break;
	case OP_GE:
		ok = compare(text, n->value) >= 0;
		break;
	case OP_REQ:
	case OP_RNE:
		ok = regexec(&n->re, text, 0, NULL, 0) == 0;
		break;
	}
	free(text);
	return ok;
}

/* Does any value at path (through arrays) satisfy n's positive form? */
static bool
any(const struct node *n, const json_t *v, const char *path)
{
	const char *dot;
	char *key;
	bool found;

	if (json_is_array(v)) {
		size_t i;
		json_t *e;

		json_array_foreach (v, i, e)
			if (any(n, e, path))
				return true;
		return false;
	}
	if (*path == '\0')
		return leaf_matches(n, v);
	if (!json_is_object(v))
		return false;
	dot = strchr(path, '.');
	key = dot != NULL ? xstrndup(path, (size_t)(dot - path)) : xstrdup(path);
	found = any(n, json_object_get(v, key) != NULL ? json_object_get(v, key) : json_null(),
	    dot != NULL ? dot + 1 : "");
	free(key);
	return found;
}

static bool
eval(const struct node *n, const json_t *v)
{
	switch (n->kind) {
	case N_AND:
		return eval(n->a, v) && eval(n->b, v);
	case N_OR:
		return eval(n->a, v) || eval(n->b, v);
	case N_NOT:
		return !eval(n->a, v);
	case N_CMP:
		break;
	}
	if (n->op == OP_NE || n->op == OP_RNE)
		return !any(n, v, n->field);
	return any(n, v, n->field);
}

bool
filter_match(const struct filter *f, const json_t *v)
{
	return f == NULL || f->root == NULL || eval(f->root, v);
}
