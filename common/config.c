/* common/config.c — option table parsing: defaults, then environment twins, then the command
 * line; usage text and an effective-configuration dump for start-up logs (see config.h).
 * Written here rather than with getopt_long because every flag needs its environment twin,
 * typed values with units, and errors that say where a bad value came from. */
#include "common/config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const SRC_DEFAULT = "default";
static const char *const SRC_ENV = "environment";
static const char *const SRC_CLI = "command line";

struct twin_config {
  char *program;               /* owned */
  char *summary;               /* owned, may be NULL */
  const twin_option *options;  /* [n_options], borrowed */
  size_t n_options;
  char **string_values;        /* [n_options], owned copies of the current string values */
  const char **sources;        /* [n_options], SRC_* or NULL when never set */
  char **positional;           /* [n_positional], owned */
  size_t n_positional;
  bool help;
};

/* ============================================================================================
 * lifecycle
 * ========================================================================================== */

twin_config *twin_config_create(const char *program, const char *summary,
                                const twin_option *options, size_t n_options) {
  twin_config *cfg = calloc(1, sizeof *cfg);
  if (!cfg) return NULL;
  cfg->program = strdup(program ? program : "program");
  cfg->summary = summary ? strdup(summary) : NULL;
  cfg->options = options;
  cfg->n_options = n_options;
  cfg->string_values = calloc(n_options ? n_options : 1, sizeof *cfg->string_values);
  cfg->sources = calloc(n_options ? n_options : 1, sizeof *cfg->sources);
  if (!cfg->program || (summary && !cfg->summary) || !cfg->string_values || !cfg->sources) {
    twin_config_destroy(cfg);
    return NULL;
  }
  return cfg;
}

static void free_positional(twin_config *cfg) {
  for (size_t i = 0; i < cfg->n_positional; i++) free(cfg->positional[i]);
  free(cfg->positional);
  cfg->positional = NULL;
  cfg->n_positional = 0;
}

void twin_config_destroy(twin_config *cfg) {
  if (!cfg) return;
  if (cfg->string_values)
    for (size_t i = 0; i < cfg->n_options; i++) free(cfg->string_values[i]);
  free(cfg->string_values);
  free(cfg->sources);
  free_positional(cfg);
  free(cfg->program);
  free(cfg->summary);
  free(cfg);
}

/* ============================================================================================
 * setting one value
 * ========================================================================================== */

static bool in_choices(const char *choices, const char *value) {
  size_t n = strlen(value);
  for (const char *p = choices; *p;) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && memcmp(p, value, n) == 0) return true;
    if (!bar) break;
    p = bar + 1;
  }
  return false;
}

/* Parses text per the option's type into its destination. The error message says what is
 * wrong with the text; the caller prefixes where it came from. */
static int set_value(twin_config *cfg, size_t i, const char *text, const char *source, twin_err *err) {
  const twin_option *o = &cfg->options[i];
  switch (o->type) {
    case TWIN_OPT_STRING: {
      if (o->choices && !in_choices(o->choices, text))
        return twin_err_set(err, TWIN_EINVAL, "'%s' is not one of %s", text, o->choices);
      char *copy = strdup(text);
      if (!copy) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
      free(cfg->string_values[i]);
      cfg->string_values[i] = copy;
      *(const char **)o->dest = copy;
      break;
    }
    case TWIN_OPT_INT: {
      int64_t v;
      int rc = twin_parse_int64(text, &v, err);
      if (rc != 0) return rc;
      if (v < INT_MIN || v > INT_MAX)
        return twin_err_set(err, TWIN_EINVAL, "'%s' is out of range for an int", text);
      *(int *)o->dest = (int)v;
      break;
    }
    case TWIN_OPT_DOUBLE: {
      double v;
      int rc = twin_parse_double(text, &v, err);
      if (rc != 0) return rc;
      *(double *)o->dest = v;
      break;
    }
    case TWIN_OPT_BOOL: {
      bool v;
      int rc = twin_parse_bool(text, &v, err);
      if (rc != 0) return rc;
      *(bool *)o->dest = v;
      break;
    }
    case TWIN_OPT_SIZE: {
      uint64_t v;
      int rc = twin_parse_size(text, &v, err);
      if (rc != 0) return rc;
      *(uint64_t *)o->dest = v;
      break;
    }
    case TWIN_OPT_DURATION: {
      int64_t v;
      int rc = twin_parse_duration_ms(text, &v, err);
      if (rc != 0) return rc;
      *(int64_t *)o->dest = v;
      break;
    }
    default:
      return twin_err_set(err, TWIN_EINVAL, "unknown option type %d", (int)o->type);
  }
  cfg->sources[i] = source;
  return 0;
}

/* ============================================================================================
 * parsing
 * ========================================================================================== */

static long find_option(const twin_config *cfg, const char *name, size_t len) {
  for (size_t i = 0; i < cfg->n_options; i++) {
    const char *n = cfg->options[i].name;
    if (strlen(n) == len && memcmp(n, name, len) == 0) return (long)i;
  }
  return -1;
}

static int check_table(const twin_config *cfg, twin_err *err) {
  for (size_t i = 0; i < cfg->n_options; i++) {
    const twin_option *o = &cfg->options[i];
    if (!o->name || !o->name[0] || o->name[0] == '-' || strchr(o->name, '='))
      return twin_err_set(err, TWIN_EINVAL, "option table entry %zu: bad name '%s'", i,
                          o->name ? o->name : "(null)");
    if (!o->dest) return twin_err_set(err, TWIN_EINVAL, "option --%s: no destination", o->name);
    if ((unsigned)o->type > TWIN_OPT_DURATION)
      return twin_err_set(err, TWIN_EINVAL, "option --%s: unknown type %d", o->name, (int)o->type);
    if (o->choices && o->type != TWIN_OPT_STRING)
      return twin_err_set(err, TWIN_EINVAL, "option --%s: choices apply to strings only", o->name);
    if (strcmp(o->name, "help") == 0)
      return twin_err_set(err, TWIN_EINVAL, "option --help is built in");
    if (find_option(cfg, o->name, strlen(o->name)) != (long)i)
      return twin_err_set(err, TWIN_EINVAL, "option --%s is declared twice", o->name);
  }
  return 0;
}

static int add_positional(twin_config *cfg, const char *arg, twin_err *err) {
  char **grown = realloc(cfg->positional, (cfg->n_positional + 1) * sizeof *grown);
  if (!grown) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  cfg->positional = grown;
  if (!(grown[cfg->n_positional] = strdup(arg))) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  cfg->n_positional++;
  return 0;
}

/* True when arg is "--name" or "--name=..." for a declared option (or --no-name of a bool). */
static bool is_known_flag(const twin_config *cfg, const char *arg) {
  if (strncmp(arg, "--", 2) != 0 || !arg[2]) return false;
  const char *name = arg + 2, *eq = strchr(name, '=');
  size_t len = eq ? (size_t)(eq - name) : strlen(name);
  if (find_option(cfg, name, len) >= 0 || (len == 4 && memcmp(name, "help", 4) == 0)) return true;
  if (len > 3 && memcmp(name, "no-", 3) == 0) {
    long k = find_option(cfg, name + 3, len - 3);
    return k >= 0 && cfg->options[k].type == TWIN_OPT_BOOL;
  }
  return false;
}

static int parse_flag(twin_config *cfg, int argc, char *const *argv, int *index, twin_err *err) {
  const char *arg = argv[*index];
  const char *name = arg + 2, *eq = strchr(name, '=');
  size_t len = eq ? (size_t)(eq - name) : strlen(name);
  long k = find_option(cfg, name, len);
  if (k < 0 && len > 3 && memcmp(name, "no-", 3) == 0) {
    long b = find_option(cfg, name + 3, len - 3);
    if (b >= 0 && cfg->options[b].type == TWIN_OPT_BOOL) {
      if (eq) return twin_err_set(err, TWIN_EINVAL, "--%.*s takes no value", (int)len, name);
      *(bool *)cfg->options[b].dest = false;
      cfg->sources[b] = SRC_CLI;
      return 0;
    }
  }
  if (k < 0) return twin_err_set(err, TWIN_EINVAL, "unknown flag --%.*s", (int)len, name);
  const twin_option *o = &cfg->options[k];
  const char *value;
  if (eq) {
    value = eq + 1;
  } else if (o->type == TWIN_OPT_BOOL) {
    value = "true";
  } else if (*index + 1 < argc && !is_known_flag(cfg, argv[*index + 1])) {
    value = argv[++*index];
  } else {
    return twin_err_set(err, TWIN_EINVAL, "--%s needs a value", o->name);
  }
  int rc = set_value(cfg, (size_t)k, value, SRC_CLI, err);
  if (rc != 0) twin_err_wrap(err, "--%s", o->name);
  return rc;
}

int twin_config_parse(twin_config *cfg, int argc, char *const *argv, twin_err *err) {
  int rc = check_table(cfg, err);
  if (rc != 0) return rc;
  free_positional(cfg);
  cfg->help = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) cfg->help = true;
  }

  for (size_t i = 0; i < cfg->n_options; i++) {
    const twin_option *o = &cfg->options[i];
    if (!o->default_value) continue;
    if ((rc = set_value(cfg, i, o->default_value, SRC_DEFAULT, err)) != 0)
      return twin_err_wrap(err, "option --%s: default", o->name);
  }
  if (cfg->help) return 0;

  for (size_t i = 0; i < cfg->n_options; i++) {
    const twin_option *o = &cfg->options[i];
    const char *v = o->env ? getenv(o->env) : NULL;
    if (!v || !v[0]) continue; /* an empty variable counts as unset */
    if ((rc = set_value(cfg, i, v, SRC_ENV, err)) != 0)
      return twin_err_wrap(err, "%s (environment, for --%s)", o->env, o->name);
  }

  bool options_ended = false;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (options_ended || arg[0] != '-' || arg[1] == 0) {
      rc = add_positional(cfg, arg, err);
    } else if (strcmp(arg, "--") == 0) {
      options_ended = true;
    } else if (arg[1] == '-') {
      rc = parse_flag(cfg, argc, argv, &i, err);
    } else {
      rc = twin_err_set(err, TWIN_EINVAL, "unknown flag %s (flags are spelled --name)", arg);
    }
    if (rc != 0) return rc;
  }
  return 0;
}

/* ============================================================================================
 * queries, usage, description
 * ========================================================================================== */

bool twin_config_help_requested(const twin_config *cfg) { return cfg->help; }

size_t twin_config_n_positional(const twin_config *cfg) { return cfg->n_positional; }

const char *twin_config_positional(const twin_config *cfg, size_t i) {
  return i < cfg->n_positional ? cfg->positional[i] : NULL;
}

const char *twin_config_source(const twin_config *cfg, const char *name) {
  long k = find_option(cfg, name, strlen(name));
  if (k < 0) return NULL;
  return cfg->sources[k] ? cfg->sources[k] : SRC_DEFAULT;
}

static const char *type_metavar(const twin_option *o) {
  if (o->metavar) return o->metavar;
  if (o->choices) return o->choices;
  switch (o->type) {
    case TWIN_OPT_STRING: return "STR";
    case TWIN_OPT_INT: return "INT";
    case TWIN_OPT_DOUBLE: return "NUM";
    case TWIN_OPT_SIZE: return "SIZE";
    case TWIN_OPT_DURATION: return "DURATION";
    default: return "";
  }
}

int twin_config_usage(const twin_config *cfg, twin_buf *out) {
  twin_buf_printf(out, "Usage: %s [options] [args...]\n", cfg->program);
  if (cfg->summary) twin_buf_printf(out, "%s\n", cfg->summary);
  twin_buf_puts(out, "\nOptions (each also read from the environment variable shown; the command "
                     "line wins):\n");
  for (size_t i = 0; i < cfg->n_options; i++) {
    const twin_option *o = &cfg->options[i];
    if (o->type == TWIN_OPT_BOOL)
      twin_buf_printf(out, "  --[no-]%s\n", o->name);
    else
      twin_buf_printf(out, "  --%s=%s\n", o->name, type_metavar(o));
    if (o->help) twin_buf_printf(out, "      %s\n", o->help);
    twin_buf_printf(out, "      env: %s  default: %s\n", o->env ? o->env : "(none)",
                    o->default_value ? (o->default_value[0] ? o->default_value : "\"\"") : "(none)");
  }
  twin_buf_puts(out, "  -h, --help\n      Print this help and exit.\n");
  return out->failed ? TWIN_ENOMEM : 0;
}

void twin_config_print_usage(const twin_config *cfg, FILE *out) {
  twin_buf b = {0};
  twin_config_usage(cfg, &b);
  fputs(twin_buf_cstr(&b), out);
  fflush(out);
  twin_buf_free(&b);
}

static bool is_secret_name(const char *name) {
  return strstr(name, "password") || strstr(name, "secret") || strstr(name, "token");
}

/* Appends a string value with the password of a URL's userinfo masked. */
static void put_masked_url(twin_buf *out, const char *v) {
  const char *scheme = strstr(v, "://");
  const char *host = scheme ? scheme + 3 : NULL;
  const char *at = host ? strchr(host, '@') : NULL;
  const char *slash = host ? strchr(host, '/') : NULL;
  if (!at || (slash && slash < at)) {
    twin_buf_puts(out, v);
    return;
  }
  const char *colon = memchr(host, ':', (size_t)(at - host));
  if (!colon) {
    twin_buf_puts(out, v);
    return;
  }
  twin_buf_append(out, v, (size_t)(colon + 1 - v));
  twin_buf_puts(out, "***");
  twin_buf_puts(out, at);
}

int twin_config_describe(const twin_config *cfg, twin_buf *out) {
  for (size_t i = 0; i < cfg->n_options; i++) {
    const twin_option *o = &cfg->options[i];
    twin_buf_printf(out, "%s=", o->name);
    switch (o->type) {
      case TWIN_OPT_STRING: {
        const char *v = *(const char **)o->dest;
        if (!v) twin_buf_puts(out, "(unset)");
        else if (is_secret_name(o->name) && v[0]) twin_buf_puts(out, "***");
        else put_masked_url(out, v);
        break;
      }
      case TWIN_OPT_INT: twin_buf_printf(out, "%d", *(const int *)o->dest); break;
      case TWIN_OPT_DOUBLE: twin_buf_printf(out, "%g", *(const double *)o->dest); break;
      case TWIN_OPT_BOOL: twin_buf_puts(out, *(const bool *)o->dest ? "true" : "false"); break;
      case TWIN_OPT_SIZE:
        twin_buf_printf(out, "%llu", (unsigned long long)*(const uint64_t *)o->dest);
        break;
      case TWIN_OPT_DURATION:
        twin_buf_printf(out, "%lldms", (long long)*(const int64_t *)o->dest);
        break;
    }
    twin_buf_printf(out, " (%s)\n", cfg->sources[i] ? cfg->sources[i] : SRC_DEFAULT);
  }
  return out->failed ? TWIN_ENOMEM : 0;
}
