/* common/config.h — service options: command-line flags, each with an environment twin.
 * A service declares a static table of twin_option; twin_config_parse fills the destinations
 * in order defaults < environment < command line, and collects positional arguments.
 * `--help`/`-h` only sets a flag: the caller prints twin_config_usage and exits 0. */
#ifndef TWIN_COMMON_CONFIG_H
#define TWIN_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "common/util.h"

typedef enum {
  TWIN_OPT_STRING,   /* dest: const char ** (points into the twin_config; NULL if no default) */
  TWIN_OPT_INT,      /* dest: int *      (decimal, range-checked) */
  TWIN_OPT_DOUBLE,   /* dest: double *   (finite) */
  TWIN_OPT_BOOL,     /* dest: bool *     (--name / --no-name; env: 1/0/true/false/yes/no/on/off) */
  TWIN_OPT_SIZE,     /* dest: uint64_t * bytes: 512, 64K, 1.5G (binary units, see twin_parse_size) */
  TWIN_OPT_DURATION, /* dest: int64_t *  milliseconds: 250, 250ms, 2s, 1.5m, 1h */
} twin_opt_type;

typedef struct twin_option {
  const char *name;          /* long flag without dashes: "port" -> --port */
  const char *env;           /* environment twin ("LLM_PORT"), or NULL for none */
  twin_opt_type type;
  const char *default_value; /* text parsed like a command-line value; NULL = leave dest as the
                                caller initialised it (strings: NULL) */
  const char *help;          /* one line for --help */
  void *dest;                /* where the value goes; type per twin_opt_type above */
  const char *choices;       /* strings only, optional: "auto|cpu|cuda" restricts the value */
  const char *metavar;       /* optional name of the value in --help ("PATH"); default by type */
} twin_option;

/* Owns copies of every string value and of the positional arguments; borrows the option
 * table (keep it alive, typically static). */
typedef struct twin_config twin_config;

/* program: name for usage ("llm-svc"); summary: one line under it (may be NULL). Both copied.
 * Returns NULL when out of memory. */
twin_config *twin_config_create(const char *program, const char *summary,
                                const twin_option *options, size_t n_options);
void twin_config_destroy(twin_config *cfg);

/* Applies defaults, then the environment (getenv), then argv[1..argc) (argv[0] is skipped).
 * Accepts --name value, --name=value, --flag / --no-flag for bools, -- to end options.
 * Errors (TWIN_EINVAL) name the flag and where the bad value came from, e.g.
 * "--port: 'abc' is not an integer" or "LLM_PORT (environment, for --port): 'x' is not an
 * integer"; unknown flags and missing values too. A table error (a bad default, duplicate
 * name) is also TWIN_EINVAL. When --help or -h is present (before any "--") nothing else is
 * checked: defaults are applied, twin_config_help_requested() is true and 0 is returned. */
int twin_config_parse(twin_config *cfg, int argc, char *const *argv, twin_err *err);

bool twin_config_help_requested(const twin_config *cfg);
/* Appends the usage text: each flag with its value kind, help, env twin and default. */
int twin_config_usage(const twin_config *cfg, twin_buf *out);
/* The same, written to out (stdout for --help). */
void twin_config_print_usage(const twin_config *cfg, FILE *out);

/* Positional arguments in order (borrowed from cfg). */
size_t twin_config_n_positional(const twin_config *cfg);
const char *twin_config_positional(const twin_config *cfg, size_t i);

/* Where an option's value came from: "default", "environment" or "command line"; NULL for
 * an unknown name. For start-up logs. */
const char *twin_config_source(const twin_config *cfg, const char *name);
/* Appends "name=value (source)" for each option, one per line; string options whose name
 * contains "password", "secret" or "token", or whose value looks like a URL with a password,
 * are masked. */
int twin_config_describe(const twin_config *cfg, twin_buf *out);

#endif
