/* common/metrics.h — a Prometheus metrics registry: counters, gauges and histograms with
 * optional labels, rendered in the text exposition format 0.0.4.
 * A family (one metric name) has children, one per tuple of label values. Updates on a child
 * are lock-free atomics (safe from any thread, no allocation): look the child up once and keep
 * the pointer on hot paths. Child lookup/creation takes the family's mutex. */
#ifndef TWIN_COMMON_METRICS_H
#define TWIN_COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/util.h"

typedef struct twin_metrics twin_metrics;             /* the registry */
typedef struct twin_metric_family twin_metric_family; /* one name: HELP, TYPE, label names */
typedef struct twin_metric twin_metric;               /* one time series (a child) */

/* The registry owns every family and child; pointers stay valid until destroy. */
twin_metrics *twin_metrics_create(void);
void twin_metrics_destroy(twin_metrics *reg);

/* ---- registration -------------------------------------------------------------------------
 * name: [a-zA-Z_:][a-zA-Z0-9_:]*, unique in the registry. help: one line (escaped on output).
 * label_names: comma-separated ("model,status"), NULL or "" for none; each [a-zA-Z_][a-zA-Z0-9_]*,
 * not starting with "__" ("le" is reserved in histograms). All strings are copied.
 * *out receives the family (owned by the registry). Errors are TWIN_EINVAL naming the metric. */
int twin_metrics_counter(twin_metrics *reg, const char *name, const char *help,
                         const char *label_names, twin_metric_family **out, twin_err *err);
int twin_metrics_gauge(twin_metrics *reg, const char *name, const char *help,
                       const char *label_names, twin_metric_family **out, twin_err *err);
/* bounds[0..n_bounds): the buckets' upper bounds (le), strictly increasing and finite; the
 * +Inf bucket is always added (a trailing +Inf in bounds is accepted and dropped). */
int twin_metrics_histogram(twin_metrics *reg, const char *name, const char *help,
                           const char *label_names, const double *bounds, size_t n_bounds,
                           twin_metric_family **out, twin_err *err);
/* An unlabeled gauge whose value is fn(user) at each scrape (queue depth, pool usage). fn runs
 * on the scraping thread while the registry is locked: it must not call into the registry.
 * user is borrowed and must outlive the registry. */
int twin_metrics_gauge_fn(twin_metrics *reg, const char *name, const char *help,
                          double (*fn)(void *user), void *user, twin_err *err);
/* hook(user) runs at the start of every render, before the registry is locked: a place to
 * set several (labeled) gauges at once. user is borrowed. */
int twin_metrics_on_scrape(twin_metrics *reg, void (*hook)(void *user), void *user, twin_err *err);

/* Bucket helpers: fill out[0..count) with start, start*factor, ... or start, start+width, ... */
void twin_metrics_buckets_exponential(double start, double factor, size_t count, double *out);
void twin_metrics_buckets_linear(double start, double width, size_t count, double *out);

/* ---- children ------------------------------------------------------------------------------ */

/* The one child of a family without labels (NULL for a labeled family). */
twin_metric *twin_metric_get(twin_metric_family *fam);
/* The child for values[0..n_values) (n_values must equal the number of label names; values
 * must be valid UTF-8; copied), created on first use. NULL on a bad count, bad UTF-8 or out
 * of memory, with err set. Mutex + linear scan: cache the pointer on hot paths. */
twin_metric *twin_metric_child(twin_metric_family *fam, const char *const *values, size_t n_values,
                               twin_err *err);
/* twin_metric_with(fam, "llama", "ok"): the same with the values inline, count checked. */
#define twin_metric_with(fam, ...)                                      \
  twin_metric_child((fam), (const char *const[]){__VA_ARGS__},          \
                    sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *), NULL)

/* ---- updates (lock-free; a NULL child is ignored, so a failed lookup never crashes) ------- */

void twin_counter_inc(twin_metric *c);
void twin_counter_add(twin_metric *c, double v); /* v < 0 or NaN is ignored: counters only rise */
void twin_gauge_set(twin_metric *g, double v);
void twin_gauge_add(twin_metric *g, double v);   /* negative to decrease */
void twin_gauge_inc(twin_metric *g);
void twin_gauge_dec(twin_metric *g);
void twin_histogram_observe(twin_metric *h, double v); /* NaN is ignored */

/* Reads (for tests and in-process stats). */
double twin_metric_value(const twin_metric *m);        /* counter or gauge value */
uint64_t twin_histogram_count(const twin_metric *h);
double twin_histogram_sum(const twin_metric *h);
/* Non-cumulative count of bucket i (0..n_bounds; n_bounds is the +Inf bucket). */
uint64_t twin_histogram_bucket(const twin_metric *h, size_t i);

/* ---- exposition ------------------------------------------------------------------------------
 * Appends every family with at least one child, in registration order (children in creation
 * order): # HELP, # TYPE, then samples; histograms as _bucket{le=...} (cumulative, ending with
 * le="+Inf"), _sum and _count. Values print in the shortest form that reads back exactly
 * ("1", "0.25", "1e+20", "+Inf", "NaN"). Serve as `text/plain; version=0.0.4`. */
#define TWIN_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
int twin_metrics_render(twin_metrics *reg, twin_buf *out, twin_err *err);

#endif
