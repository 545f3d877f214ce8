/* common/metrics.c — the Prometheus registry: families and children, lock-free updates
 * (doubles kept as bit patterns in 64-bit atomics, added with a compare-and-swap loop), and the
 * text exposition format 0.0.4 (see metrics.h). Histogram buckets are stored non-cumulative
 * and summed at render time, so an observation is one fetch_add plus one CAS. */
#include "common/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM, KIND_GAUGE_FN } metric_kind;

struct twin_metric {
  twin_metric_family *family;
  char **label_values;             /* [family->n_labels], owned */
  _Atomic uint64_t value_bits;     /* counter/gauge value; histogram sum (double bits) */
  _Atomic uint64_t *bucket_counts; /* histogram: [n_bounds + 1], non-cumulative; last = +Inf */
  twin_metric *next;
};

struct twin_metric_family {
  char *name, *help;
  metric_kind kind;
  char **label_names; /* [n_labels], owned */
  size_t n_labels;
  double *bounds;     /* histogram: [n_bounds], strictly increasing, +Inf excluded */
  size_t n_bounds;
  double (*fn)(void *user); /* KIND_GAUGE_FN */
  void *fn_user;
  pthread_mutex_t mu;       /* guards the children list */
  twin_metric *children, *children_tail;
  twin_metric_family *next;
};

typedef struct scrape_hook {
  void (*fn)(void *user);
  void *user;
} scrape_hook;

struct twin_metrics {
  pthread_mutex_t mu; /* guards the family list and hooks */
  twin_metric_family *families, *families_tail;
  scrape_hook *hooks; /* [n_hooks] */
  size_t n_hooks;
};

/* ============================================================================================
 * atomics on doubles
 * ========================================================================================== */

static inline uint64_t double_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static inline double bits_double(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

static inline void atomic_add_double(_Atomic uint64_t *a, double v) {
  uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(a, &old, double_bits(bits_double(old) + v),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* ============================================================================================
 * lifecycle
 * ========================================================================================== */

twin_metrics *twin_metrics_create(void) {
  twin_metrics *reg = calloc(1, sizeof *reg);
  if (!reg) return NULL;
  pthread_mutex_init(&reg->mu, NULL);
  return reg;
}

static void child_free(twin_metric *c, size_t n_labels) {
  if (c->label_values)
    for (size_t i = 0; i < n_labels; i++) free(c->label_values[i]);
  free(c->label_values);
  free((void *)c->bucket_counts);
  free(c);
}

static void family_free(twin_metric_family *f) {
  for (twin_metric *c = f->children, *next; c; c = next) {
    next = c->next;
    child_free(c, f->n_labels);
  }
  for (size_t i = 0; i < f->n_labels; i++) free(f->label_names[i]);
  free(f->label_names);
  free(f->bounds);
  free(f->name);
  free(f->help);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

void twin_metrics_destroy(twin_metrics *reg) {
  if (!reg) return;
  for (twin_metric_family *f = reg->families, *next; f; f = next) {
    next = f->next;
    family_free(f);
  }
  free(reg->hooks);
  pthread_mutex_destroy(&reg->mu);
  free(reg);
}

/* ============================================================================================
 * registration
 * ========================================================================================== */

static bool valid_metric_name(const char *s) {
  if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' || *s == ':'))
    return false;
  for (s++; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == ':'))
      return false;
  return true;
}

static bool valid_label_name(const char *s, size_t n) {
  if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
    return false;
  if (n >= 2 && s[0] == '_' && s[1] == '_') return false; /* reserved for Prometheus */
  for (size_t i = 1; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
      return false;
  return true;
}

/* Splits "a,b,c" into the family's label names, validating each. */
static int parse_label_names(twin_metric_family *f, const char *names, twin_err *err) {
  if (!names || !names[0]) return 0;
  size_t n = 1;
  for (const char *p = names; *p; p++) n += *p == ',';
  f->label_names = calloc(n, sizeof *f->label_names);
  if (!f->label_names) return twin_err_set(err, TWIN_ENOMEM, "metric %s: out of memory", f->name);
  const char *p = names;
  for (size_t i = 0; i < n; i++) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    while (len && p[0] == ' ') p++, len--;
    while (len && p[len - 1] == ' ') len--;
    if (!valid_label_name(p, len))
      return twin_err_set(err, TWIN_EINVAL, "metric %s: bad label name '%.*s' in \"%s\"", f->name,
                          (int)len, p, names);
    if (f->kind == KIND_HISTOGRAM && len == 2 && memcmp(p, "le", 2) == 0)
      return twin_err_set(err, TWIN_EINVAL, "metric %s: label name 'le' is reserved in histograms",
                          f->name);
    for (size_t j = 0; j < i; j++)
      if (strlen(f->label_names[j]) == len && memcmp(f->label_names[j], p, len) == 0)
        return twin_err_set(err, TWIN_EINVAL, "metric %s: label '%.*s' appears twice", f->name,
                            (int)len, p);
    if (!(f->label_names[i] = strndup(p, len)))
      return twin_err_set(err, TWIN_ENOMEM, "metric %s: out of memory", f->name);
    f->n_labels = i + 1;
    p = comma ? comma + 1 : p + len;
  }
  return 0;
}

static twin_metric *child_new(twin_metric_family *f) {
  twin_metric *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->family = f;
  atomic_init(&c->value_bits, double_bits(0.0));
  if (f->kind == KIND_HISTOGRAM) {
    c->bucket_counts = calloc(f->n_bounds + 1, sizeof *c->bucket_counts);
    if (!c->bucket_counts) {
      free(c);
      return NULL;
    }
    for (size_t i = 0; i <= f->n_bounds; i++) atomic_init(&c->bucket_counts[i], 0);
  }
  return c;
}

static void append_child(twin_metric_family *f, twin_metric *c) {
  if (f->children_tail) f->children_tail->next = c;
  else f->children = c;
  f->children_tail = c;
}

static int register_family(twin_metrics *reg, const char *name, const char *help, metric_kind kind,
                           const char *label_names, const double *bounds, size_t n_bounds,
                           double (*fn)(void *), void *fn_user, twin_metric_family **out,
                           twin_err *err) {
  if (out) *out = NULL;
  if (!valid_metric_name(name))
    return twin_err_set(err, TWIN_EINVAL, "bad metric name '%s'", name ? name : "(null)");
  twin_metric_family *f = calloc(1, sizeof *f);
  if (!f) return twin_err_set(err, TWIN_ENOMEM, "metric %s: out of memory", name);
  pthread_mutex_init(&f->mu, NULL);
  f->kind = kind;
  f->fn = fn;
  f->fn_user = fn_user;
  f->name = strdup(name);
  f->help = strdup(help ? help : "");
  int rc = 0;
  if (!f->name || !f->help) {
    rc = twin_err_set(err, TWIN_ENOMEM, "metric %s: out of memory", name);
    goto fail;
  }
  if ((rc = parse_label_names(f, label_names, err)) != 0) goto fail;
  if (kind == KIND_HISTOGRAM) {
    if (n_bounds && isinf(bounds[n_bounds - 1]) && bounds[n_bounds - 1] > 0) n_bounds--;
    for (size_t i = 0; i < n_bounds; i++) {
      if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
        rc = twin_err_set(err, TWIN_EINVAL,
                          "metric %s: bucket bound %zu (%g) is not finite and above the previous one",
                          name, i, bounds[i]);
        goto fail;
      }
    }
    f->bounds = malloc((n_bounds ? n_bounds : 1) * sizeof *f->bounds);
    if (!f->bounds) {
      rc = twin_err_set(err, TWIN_ENOMEM, "metric %s: out of memory", name);
      goto fail;
    }
    if (n_bounds) memcpy(f->bounds, bounds, n_bounds * sizeof *bounds);
    f->n_bounds = n_bounds;
  }
  if (f->n_labels == 0) { /* the single child exists from the start */
    twin_metric *c = child_new(f);
    if (!c) {
      rc = twin_err_set(err, TWIN_ENOMEM, "metric %s: out of memory", name);
      goto fail;
    }
    append_child(f, c);
  }

  pthread_mutex_lock(&reg->mu);
  for (twin_metric_family *g = reg->families; g; g = g->next) {
    if (strcmp(g->name, name) == 0) {
      pthread_mutex_unlock(&reg->mu);
      rc = twin_err_set(err, TWIN_EINVAL, "metric %s is already registered", name);
      goto fail;
    }
  }
  if (reg->families_tail) reg->families_tail->next = f;
  else reg->families = f;
  reg->families_tail = f;
  pthread_mutex_unlock(&reg->mu);
  if (out) *out = f;
  return 0;

fail:
  family_free(f);
  return rc;
}

int twin_metrics_counter(twin_metrics *reg, const char *name, const char *help,
                         const char *label_names, twin_metric_family **out, twin_err *err) {
  return register_family(reg, name, help, KIND_COUNTER, label_names, NULL, 0, NULL, NULL, out, err);
}

int twin_metrics_gauge(twin_metrics *reg, const char *name, const char *help,
                       const char *label_names, twin_metric_family **out, twin_err *err) {
  return register_family(reg, name, help, KIND_GAUGE, label_names, NULL, 0, NULL, NULL, out, err);
}

int twin_metrics_histogram(twin_metrics *reg, const char *name, const char *help,
                           const char *label_names, const double *bounds, size_t n_bounds,
                           twin_metric_family **out, twin_err *err) {
  if (n_bounds && !bounds)
    return twin_err_set(err, TWIN_EINVAL, "metric %s: bounds missing", name ? name : "(null)");
  return register_family(reg, name, help, KIND_HISTOGRAM, label_names, bounds, n_bounds, NULL, NULL,
                         out, err);
}

int twin_metrics_gauge_fn(twin_metrics *reg, const char *name, const char *help,
                          double (*fn)(void *user), void *user, twin_err *err) {
  if (!fn) return twin_err_set(err, TWIN_EINVAL, "metric %s: no callback", name ? name : "(null)");
  return register_family(reg, name, help, KIND_GAUGE_FN, NULL, NULL, 0, fn, user, NULL, err);
}

int twin_metrics_on_scrape(twin_metrics *reg, void (*hook)(void *user), void *user, twin_err *err) {
  if (!hook) return twin_err_set(err, TWIN_EINVAL, "metrics: scrape hook is NULL");
  pthread_mutex_lock(&reg->mu);
  scrape_hook *grown = realloc(reg->hooks, (reg->n_hooks + 1) * sizeof *grown);
  if (grown) {
    reg->hooks = grown;
    grown[reg->n_hooks++] = (scrape_hook){hook, user};
  }
  pthread_mutex_unlock(&reg->mu);
  return grown ? 0 : twin_err_set(err, TWIN_ENOMEM, "metrics: out of memory");
}

void twin_metrics_buckets_exponential(double start, double factor, size_t count, double *out) {
  double v = start;
  for (size_t i = 0; i < count; i++, v *= factor) out[i] = v;
}

void twin_metrics_buckets_linear(double start, double width, size_t count, double *out) {
  for (size_t i = 0; i < count; i++) out[i] = start + width * (double)i;
}

/* ============================================================================================
 * children
 * ========================================================================================== */

twin_metric *twin_metric_get(twin_metric_family *fam) {
  return fam && fam->n_labels == 0 ? fam->children : NULL;
}

twin_metric *twin_metric_child(twin_metric_family *fam, const char *const *values, size_t n_values,
                               twin_err *err) {
  if (!fam) {
    twin_err_set(err, TWIN_EINVAL, "metric family is NULL");
    return NULL;
  }
  if (n_values != fam->n_labels) {
    twin_err_set(err, TWIN_EINVAL, "metric %s: %zu label values given, it has %zu labels",
                 fam->name, n_values, fam->n_labels);
    return NULL;
  }
  if (fam->n_labels == 0) return fam->children;
  for (size_t i = 0; i < n_values; i++) {
    size_t len = values[i] ? strlen(values[i]) : 0;
    if (!values[i] || twin_utf8_validate(values[i], len) != len) {
      twin_err_set(err, TWIN_EINVAL, "metric %s: value of label %s is %s", fam->name,
                   fam->label_names[i], values[i] ? "not valid UTF-8" : "NULL");
      return NULL;
    }
  }

  pthread_mutex_lock(&fam->mu);
  for (twin_metric *c = fam->children; c; c = c->next) {
    size_t i = 0;
    while (i < n_values && strcmp(c->label_values[i], values[i]) == 0) i++;
    if (i == n_values) {
      pthread_mutex_unlock(&fam->mu);
      return c;
    }
  }
  twin_metric *c = child_new(fam);
  if (c && !(c->label_values = calloc(n_values, sizeof *c->label_values))) {
    child_free(c, 0);
    c = NULL;
  }
  for (size_t i = 0; c && i < n_values; i++) {
    if (!(c->label_values[i] = strdup(values[i]))) {
      child_free(c, n_values);
      c = NULL;
    }
  }
  if (c) append_child(fam, c);
  pthread_mutex_unlock(&fam->mu);
  if (!c) twin_err_set(err, TWIN_ENOMEM, "metric %s: out of memory", fam->name);
  return c;
}

/* ============================================================================================
 * updates and reads
 * ========================================================================================== */

void twin_counter_inc(twin_metric *c) {
  if (c) atomic_add_double(&c->value_bits, 1.0);
}

void twin_counter_add(twin_metric *c, double v) {
  if (c && v > 0) atomic_add_double(&c->value_bits, v);
}

void twin_gauge_set(twin_metric *g, double v) {
  if (g) atomic_store_explicit(&g->value_bits, double_bits(v), memory_order_relaxed);
}

void twin_gauge_add(twin_metric *g, double v) {
  if (g) atomic_add_double(&g->value_bits, v);
}

void twin_gauge_inc(twin_metric *g) { twin_gauge_add(g, 1.0); }
void twin_gauge_dec(twin_metric *g) { twin_gauge_add(g, -1.0); }

void twin_histogram_observe(twin_metric *h, double v) {
  if (!h || !h->bucket_counts || isnan(v)) return;
  const twin_metric_family *f = h->family;
  /* first bucket whose upper bound is >= v (le is inclusive) */
  size_t lo = 0, hi = f->n_bounds;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (f->bounds[mid] >= v) hi = mid;
    else lo = mid + 1;
  }
  atomic_fetch_add_explicit(&h->bucket_counts[lo], 1, memory_order_relaxed);
  atomic_add_double(&h->value_bits, v);
}

double twin_metric_value(const twin_metric *m) {
  return m ? bits_double(atomic_load_explicit(&((twin_metric *)m)->value_bits, memory_order_relaxed)) : 0.0;
}

uint64_t twin_histogram_count(const twin_metric *h) {
  if (!h || !h->bucket_counts) return 0;
  uint64_t n = 0;
  for (size_t i = 0; i <= h->family->n_bounds; i++)
    n += atomic_load_explicit(&h->bucket_counts[i], memory_order_relaxed);
  return n;
}

double twin_histogram_sum(const twin_metric *h) {
  return h && h->bucket_counts ? twin_metric_value(h) : 0.0;
}

uint64_t twin_histogram_bucket(const twin_metric *h, size_t i) {
  if (!h || !h->bucket_counts || i > h->family->n_bounds) return 0;
  return atomic_load_explicit(&h->bucket_counts[i], memory_order_relaxed);
}

/* ============================================================================================
 * exposition
 * ========================================================================================== */

/* Shortest "%.{15,16,17}g" that reads back as the same double; Prometheus spellings for
 * the special values. */
static void put_value(twin_buf *out, double v) {
  if (isnan(v)) {
    twin_buf_puts(out, "NaN");
    return;
  }
  if (isinf(v)) {
    twin_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  char tmp[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v) break;
  }
  twin_buf_puts(out, tmp);
}

static void put_escaped(twin_buf *out, const char *s, bool quote_too) {
  for (const char *p = s; *p; p++) {
    if (*p == '\\') twin_buf_puts(out, "\\\\");
    else if (*p == '\n') twin_buf_puts(out, "\\n");
    else if (*p == '"' && quote_too) twin_buf_puts(out, "\\\"");
    else twin_buf_putc(out, *p);
  }
}

/* {a="x",b="y"[,le="..."]}; nothing when there are no labels and no le. */
static void put_labels(twin_buf *out, const twin_metric_family *f, const twin_metric *c,
                       const char *le) {
  if (f->n_labels == 0 && !le) return;
  twin_buf_putc(out, '{');
  for (size_t i = 0; i < f->n_labels; i++) {
    twin_buf_printf(out, "%s%s=\"", i ? "," : "", f->label_names[i]);
    put_escaped(out, c->label_values[i], true);
    twin_buf_putc(out, '"');
  }
  if (le) twin_buf_printf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le);
  twin_buf_putc(out, '}');
}

static void render_family(twin_buf *out, twin_metric_family *f) {
  static const char *type_names[] = {"counter", "gauge", "histogram", "gauge"};
  pthread_mutex_lock(&f->mu);
  if (!f->children) {
    pthread_mutex_unlock(&f->mu);
    return;
  }
  twin_buf_printf(out, "# HELP %s ", f->name);
  put_escaped(out, f->help, false);
  twin_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->kind]);
  for (twin_metric *c = f->children; c; c = c->next) {
    if (f->kind != KIND_HISTOGRAM) {
      double v = f->kind == KIND_GAUGE_FN ? f->fn(f->fn_user) : twin_metric_value(c);
      twin_buf_puts(out, f->name);
      put_labels(out, f, c, NULL);
      twin_buf_putc(out, ' ');
      put_value(out, v);
      twin_buf_putc(out, '\n');
      continue;
    }
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= f->n_bounds; i++) {
      cumulative += atomic_load_explicit(&c->bucket_counts[i], memory_order_relaxed);
      twin_buf le = {0};
      if (i < f->n_bounds) put_value(&le, f->bounds[i]);
      else twin_buf_puts(&le, "+Inf");
      twin_buf_printf(out, "%s_bucket", f->name);
      put_labels(out, f, c, twin_buf_cstr(&le));
      twin_buf_printf(out, " %llu\n", (unsigned long long)cumulative);
      twin_buf_free(&le);
    }
    twin_buf_printf(out, "%s_sum", f->name);
    put_labels(out, f, c, NULL);
    twin_buf_putc(out, ' ');
    put_value(out, twin_metric_value(c));
    twin_buf_printf(out, "\n%s_count", f->name);
    put_labels(out, f, c, NULL);
    twin_buf_printf(out, " %llu\n", (unsigned long long)cumulative);
  }
  pthread_mutex_unlock(&f->mu);
}

int twin_metrics_render(twin_metrics *reg, twin_buf *out, twin_err *err) {
  /* hooks run unlocked: they may look up children and set gauges */
  pthread_mutex_lock(&reg->mu);
  size_t n_hooks = reg->n_hooks;
  scrape_hook *hooks = n_hooks ? malloc(n_hooks * sizeof *hooks) : NULL;
  if (hooks) memcpy(hooks, reg->hooks, n_hooks * sizeof *hooks);
  pthread_mutex_unlock(&reg->mu);
  if (n_hooks && !hooks) return twin_err_set(err, TWIN_ENOMEM, "metrics: out of memory");
  for (size_t i = 0; i < n_hooks; i++) hooks[i].fn(hooks[i].user);
  free(hooks);

  pthread_mutex_lock(&reg->mu);
  for (twin_metric_family *f = reg->families; f; f = f->next) render_family(out, f);
  pthread_mutex_unlock(&reg->mu);
  if (out->failed) return twin_err_set(err, TWIN_ENOMEM, "metrics: out of memory rendering");
  return 0;
}
