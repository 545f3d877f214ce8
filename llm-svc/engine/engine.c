/* llm-svc/engine/engine.c — the scheduler loop. Per step: take the inbox (new requests,
 * cancels); finish cancelled sequences; plan a batch (every running decode first, then running
 * prefills in chunks, then waiting requests admitted in arrival order with a prefix-cache
 * lookup) under the token budget, preempting the newest running sequence when a block cannot be
 * had; one forward; commit newly full blocks to the prefix cache; sample, detokenize, match
 * stops and report; finish what hit EOS, a stop string, its length or the context limit.
 *
 * Sampling on the device. When the backend implements forward_sample (backend.h; the CUDA
 * backend does, the CPU backend does not) and every sequence that gets a token this step asks
 * for nothing the device sampler lacks (no repetition, presence or frequency penalty, no
 * logprobs), the step runs forward_sample: the backend picks the tokens where the logits are and
 * only the ids come back (no [batch][vocab] copy to the host, no host scan of it). Otherwise the
 * step takes the logits and the host sampler (sampler.h), as before. Either way each token is
 * recorded in the sequence's twin_sampler (device tokens through twin_sampler_accept), so its
 * state is the same whichever path chose a token. The device draw of a sequence is keyed by
 * (seed, offset): the request's seed (or one drawn from the OS at submit when it gives none) and
 * the count of tokens it has generated, so a seeded request gets the same tokens on the device
 * path whatever else shares its batches, also after a preemption. The two paths use different
 * generators (Philox on the device, xoshiro on the host), so a seeded request whose steps fall
 * back to the host (a penalized or logprobs request in the same batch) draws different, equally
 * valid tokens; greedy requests get the argmax on both. TWIN_DEVICE_SAMPLING=0 in the
 * environment at create keeps every step on the host path (for comparisons). */
#include "llm-svc/engine/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "llm-svc/engine/kv_block_pool.h"
#include "llm-svc/engine/seq_text.h"

/* ==== sequences ============================================================================= */

typedef struct seq {
  uint64_t id;
  struct seq *prev, *next;       /* in waiting or running */
  int32_t *tokens;               /* [cap] prompt, then generated */
  int n_tokens, cap;
  int n_prompt;
  int n_generated;
  int max_new;                   /* effective: min(asked, context left) */
  int n_computed;                /* tokens whose K/V are in the cache */
  int32_t *blocks;               /* [max_blocks] block table */
  int n_blocks;
  int n_hashed;                  /* leading blocks committed to the prefix cache */
  uint64_t last_hash;            /* hash of block n_hashed-1 */
  int cached_prompt;             /* prompt tokens found in the prefix cache at first admission */
  int ever_scheduled;
  int ignore_eos;
  int cancel_requested;
  twin_sampler *sampler;
  twin_seq_text *text;
  int want_logprobs;
  int device_ok;                 /* no penalties, no logprobs: its tokens may come from the device */
  twin_backend_sampling device;  /* its parameters there (offset set each step) */
  twin_gen_callback cb;
  void *user;
  int64_t t_arrival, t_first_sched, t_first_token, t_last_token; /* monotonic us */
} seq;

typedef struct seq_list {
  seq *head, *tail;
  int n;
} seq_list;

static void list_push_tail(seq_list *l, seq *s) {
  s->next = NULL;
  s->prev = l->tail;
  if (l->tail) l->tail->next = s; else l->head = s;
  l->tail = s;
  l->n++;
}

static void list_push_head(seq_list *l, seq *s) {
  s->prev = NULL;
  s->next = l->head;
  if (l->head) l->head->prev = s; else l->tail = s;
  l->head = s;
  l->n++;
}

static void list_remove(seq_list *l, seq *s) {
  if (s->prev) s->prev->next = s->next; else l->head = s->next;
  if (s->next) s->next->prev = s->prev; else l->tail = s->prev;
  s->prev = s->next = NULL;
  l->n--;
}

/* ==== engine ================================================================================ */

typedef struct engine_metrics {
  twin_metric *running, *waiting, *blocks_used, *blocks_total;
  twin_metric *prefix_queries, *prefix_hits, *preemptions;
  twin_metric *prompt_tokens, *generation_tokens;
  twin_metric *ttft, *itl, *e2e, *queue;
  twin_metric_family *finished;
} engine_metrics;

struct twin_engine {
  twin_backend *backend;
  const twin_tokenizer *tok;
  int32_t eos[TWIN_MAX_EOS];
  int n_eos;
  twin_engine_opts opts;
  int vocab;
  int max_blocks;                /* per sequence: ceil(max_context / block size) */
  twin_kv_pool *pool;

  pthread_t thread;
  pthread_mutex_t mu;            /* guards the inbox, cancels, flags and stats snapshot */
  pthread_cond_t cv;
  seq_list inbox;
  uint64_t *cancels;             /* [n_cancels] */
  int n_cancels, cap_cancels;
  int stopping, draining;
  uint64_t next_id;
  twin_engine_stats snapshot;

  /* loop-thread state */
  seq_list waiting, running;
  uint64_t preemptions, steps;
  twin_sampler_scratch *scratch;
  int device_sampling;           /* the backend samples on its device and it is not turned off */
  /* batch buffers */
  int32_t *b_tokens, *b_positions;   /* [max_tokens_per_step] */
  int32_t *b_seq_start;              /* [max_batch + 1] */
  int32_t *b_seq_len;                /* [max_batch] */
  int32_t *b_tables;                 /* [max_batch][max_blocks] */
  seq **b_seqs;                      /* [max_batch] */
  int *b_chunk;                      /* [max_batch] */
  float *logits;                     /* [max_batch][vocab] */
  twin_backend_sampling *b_sampling; /* [max_batch] parameters of a device-sampled step */
  int32_t *b_sampled;                /* [max_batch] its tokens */
  twin_buf text;

  engine_metrics m;
};

/* ==== metrics =============================================================================== */

static void metrics_setup(twin_engine *e) {
  twin_metrics *r = e->opts.metrics;
  if (!r) return;
  twin_metric_family *f;
  twin_err err;
#define GAUGE(field, name, help) \
  if (twin_metrics_gauge(r, name, help, NULL, &f, &err) == 0) e->m.field = twin_metric_get(f);
#define COUNTER(field, name, help) \
  if (twin_metrics_counter(r, name, help, NULL, &f, &err) == 0) e->m.field = twin_metric_get(f);
  GAUGE(running, "llm_num_requests_running", "Requests in the running batch.");
  GAUGE(waiting, "llm_num_requests_waiting", "Requests waiting for admission.");
  GAUGE(blocks_used, "llm_kv_cache_blocks_used", "KV cache blocks referenced by sequences.");
  GAUGE(blocks_total, "llm_kv_cache_blocks_total", "KV cache blocks in the pool.");
  COUNTER(prefix_queries, "llm_prefix_cache_queries_total", "Prefix-cache block lookups.");
  COUNTER(prefix_hits, "llm_prefix_cache_hits_total", "Prefix-cache block lookups that hit.");
  COUNTER(preemptions, "llm_num_preemptions_total", "Sequences preempted for lack of KV blocks.");
  COUNTER(prompt_tokens, "llm_prompt_tokens_total", "Prompt tokens processed.");
  COUNTER(generation_tokens, "llm_generation_tokens_total", "Tokens generated.");
#undef GAUGE
#undef COUNTER
  double lat[20];
  twin_metrics_buckets_exponential(0.001, 2.0, 16, lat); /* 1 ms .. 33 s */
  if (twin_metrics_histogram(r, "llm_time_to_first_token_seconds", "Arrival to first token.",
                             NULL, lat, 16, &f, &err) == 0)
    e->m.ttft = twin_metric_get(f);
  if (twin_metrics_histogram(r, "llm_inter_token_latency_seconds", "Time between two tokens of a request.",
                             NULL, lat, 16, &f, &err) == 0)
    e->m.itl = twin_metric_get(f);
  if (twin_metrics_histogram(r, "llm_e2e_request_latency_seconds", "Arrival to last token.",
                             NULL, lat, 16, &f, &err) == 0)
    e->m.e2e = twin_metric_get(f);
  if (twin_metrics_histogram(r, "llm_request_queue_time_seconds", "Arrival to first scheduled.",
                             NULL, lat, 16, &f, &err) == 0)
    e->m.queue = twin_metric_get(f);
  twin_metrics_counter(r, "llm_request_finished_total", "Requests finished, by reason.",
                       "finished_reason", &e->m.finished, &err);
  twin_gauge_set(e->m.blocks_total, e->pool ? twin_kv_pool_available(e->pool) : 0);
}

static void publish_stats(twin_engine *e) {
  twin_kv_pool_stats ps;
  twin_kv_pool_get_stats(e->pool, &ps);
  pthread_mutex_lock(&e->mu);
  twin_engine_stats *s = &e->snapshot;
  uint64_t dq = ps.queries - s->prefix_queries, dh = ps.hits - s->prefix_hits;
  uint64_t dp = e->preemptions - s->preemptions;
  s->running = e->running.n;
  s->waiting = e->waiting.n + e->inbox.n;
  s->blocks_total = ps.total;
  s->blocks_used = ps.used;
  s->prefix_queries = ps.queries;
  s->prefix_hits = ps.hits;
  s->preemptions = e->preemptions;
  s->steps = e->steps;
  int waiting = s->waiting;
  pthread_mutex_unlock(&e->mu);
  twin_gauge_set(e->m.running, e->running.n);
  twin_gauge_set(e->m.waiting, waiting);
  twin_gauge_set(e->m.blocks_used, ps.used);
  twin_counter_add(e->m.prefix_queries, (double)dq);
  twin_counter_add(e->m.prefix_hits, (double)dh);
  twin_counter_add(e->m.preemptions, (double)dp);
}

/* ==== sequence lifetime ===================================================================== */

static void seq_free(seq *s) {
  if (!s) return;
  twin_sampler_destroy(s->sampler);
  twin_seq_text_destroy(s->text);
  free(s->tokens);
  free(s->blocks);
  free(s);
}

static void seq_release_blocks(twin_engine *e, seq *s) {
  for (int i = 0; i < s->n_blocks; i++) twin_kv_pool_release(e->pool, s->blocks[i]);
  s->n_blocks = 0;
  s->n_hashed = 0;
  s->last_hash = 0;
  s->n_computed = 0;
}

static double ms_since(int64_t t0_us, int64_t t_us) { return t0_us && t_us ? (t_us - t0_us) / 1e3 : 0; }

/* Reports the last event and frees the sequence (already unlinked from every list). */
static void seq_finish(twin_engine *e, seq *s, twin_finish_reason why, const char *error) {
  seq_release_blocks(e, s);
  twin_buf_reset(&e->text);
  if (why != TWIN_FINISH_CANCELLED && why != TWIN_FINISH_ERROR && s->text)
    twin_seq_text_flush(s->text, &e->text);
  int64_t now = twin_time_mono_us();
  if (!s->t_last_token) s->t_last_token = now;
  twin_gen_event ev = {0};
  ev.text = twin_buf_cstr(&e->text);
  ev.text_len = e->text.len;
  ev.finish = why;
  ev.error = error;
  ev.prompt_tokens = s->n_prompt;
  ev.completion_tokens = s->n_generated;
  ev.cached_tokens = s->cached_prompt;
  ev.queue_ms = ms_since(s->t_arrival, s->t_first_sched);
  ev.ttft_ms = ms_since(s->t_arrival, s->t_first_token);
  ev.total_ms = ms_since(s->t_arrival, now);
  s->cb(s->user, &ev);
  twin_histogram_observe(e->m.e2e, ev.total_ms / 1e3);
  static const char *names[] = {"none", "stop", "length", "cancelled", "error"};
  twin_counter_inc(e->m.finished ? twin_metric_with(e->m.finished, names[why]) : NULL);
  seq_free(s);
}

/* ==== submission (any thread) =============================================================== */

/* The key of a request's device draws: its seed, or 64 bits from the OS. */
static uint64_t request_seed(const twin_sampling_params *p, const void *salt) {
  if (p->has_seed) return p->seed;
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) == (ssize_t)sizeof seed) return seed;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) ^ (uint64_t)(uintptr_t)salt;
}

/* What the device sampler needs of a request, and whether it can serve it at all. */
static void seq_set_device_sampling(seq *s, const twin_sampling_params *p) {
  s->device_ok = p->repetition_penalty == 1.0f && p->presence_penalty == 0.0f &&
                 p->frequency_penalty == 0.0f && !p->logprobs && p->top_logprobs == 0;
  s->device = (twin_backend_sampling){
      .temperature = p->temperature < TWIN_SAMPLER_GREEDY_BELOW ? 0.0f : p->temperature,
      .top_k = p->top_k,
      .top_p = p->top_p,
      .min_p = p->min_p,
      .seed = request_seed(p, s),
  };
}

int twin_engine_submit(twin_engine *e, const twin_gen_request *req, uint64_t *id_out, twin_err *err) {
  const twin_engine_opts *o = &e->opts;
  if (!req->callback) return twin_err_set(err, TWIN_EINVAL, "request has no callback");
  if (req->n_prompt <= 0) return twin_err_set(err, TWIN_EINVAL, "prompt: empty (no tokens)");
  if (req->n_prompt >= o->max_context)
    return twin_err_set(err, TWIN_EINVAL,
                        "prompt: %d tokens leave no room in the context limit of %d tokens",
                        req->n_prompt, o->max_context);
  for (int i = 0; i < req->n_prompt; i++)
    if (req->prompt[i] < 0 || req->prompt[i] >= e->vocab)
      return twin_err_set(err, TWIN_EINVAL, "token_ids[%d]: %d is outside the vocabulary [0, %d)",
                          i, req->prompt[i], e->vocab);
  if (req->max_new_tokens < 0 || req->max_new_tokens > o->max_new_tokens_limit)
    return twin_err_set(err, TWIN_EINVAL, "max_new_tokens: %d is outside [1, %d]",
                        req->max_new_tokens, o->max_new_tokens_limit);
  int rc = twin_sampling_params_validate(&req->sampling, err);
  if (rc) return rc;

  seq *s = calloc(1, sizeof *s);
  if (!s) return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  int max_new = req->max_new_tokens ? req->max_new_tokens : o->default_max_new_tokens;
  if (max_new > o->max_context - req->n_prompt) max_new = o->max_context - req->n_prompt;
  s->max_new = max_new;
  s->cap = req->n_prompt + max_new;
  s->tokens = malloc((size_t)s->cap * sizeof *s->tokens);
  s->blocks = malloc((size_t)e->max_blocks * sizeof *s->blocks);
  if (!s->tokens || !s->blocks) {
    seq_free(s);
    return twin_err_set(err, TWIN_ENOMEM, "out of memory");
  }
  memcpy(s->tokens, req->prompt, (size_t)req->n_prompt * sizeof *s->tokens);
  s->n_tokens = s->n_prompt = req->n_prompt;
  s->ignore_eos = req->ignore_eos;
  s->cb = req->callback;
  s->user = req->user;
  s->want_logprobs = req->sampling.logprobs;
  seq_set_device_sampling(s, &req->sampling);
  if ((rc = twin_sampler_create(&req->sampling, e->vocab, &s->sampler, err)) ||
      (rc = twin_sampler_add_prompt(s->sampler, req->prompt, req->n_prompt, err)) ||
      (rc = twin_seq_text_create(e->tok, req->prompt, req->n_prompt, req->stop, req->n_stop, &s->text, err))) {
    seq_free(s);
    return rc;
  }
  s->t_arrival = twin_time_mono_us();

  pthread_mutex_lock(&e->mu);
  if (e->draining || e->stopping) {
    pthread_mutex_unlock(&e->mu);
    seq_free(s);
    return twin_err_set(err, TWIN_EUNAVAILABLE, "the server is shutting down");
  }
  if (e->snapshot.waiting >= o->max_queue) { /* waiting + inbox, kept current below */
    pthread_mutex_unlock(&e->mu);
    seq_free(s);
    return twin_err_set(err, TWIN_EFULL, "the request queue is full (%d waiting)", o->max_queue);
  }
  s->id = ++e->next_id;
  list_push_tail(&e->inbox, s);
  e->snapshot.waiting++;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  if (id_out) *id_out = s->id;
  return 0;
}

void twin_engine_cancel(twin_engine *e, uint64_t id) {
  pthread_mutex_lock(&e->mu);
  if (e->n_cancels == e->cap_cancels) {
    int cap = e->cap_cancels ? e->cap_cancels * 2 : 64;
    uint64_t *c = realloc(e->cancels, (size_t)cap * sizeof *c);
    if (!c) {
      pthread_mutex_unlock(&e->mu);
      return;
    }
    e->cancels = c;
    e->cap_cancels = cap;
  }
  e->cancels[e->n_cancels++] = id;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
}

void twin_engine_drain(twin_engine *e) {
  pthread_mutex_lock(&e->mu);
  e->draining = 1;
  pthread_mutex_unlock(&e->mu);
}

void twin_engine_get_stats(twin_engine *e, twin_engine_stats *out) {
  pthread_mutex_lock(&e->mu);
  *out = e->snapshot;
  pthread_mutex_unlock(&e->mu);
}

const twin_engine_opts *twin_engine_get_opts(const twin_engine *e) { return &e->opts; }

/* ==== scheduling ============================================================================ */

static void preempt(twin_engine *e, seq *victim) {
  list_remove(&e->running, victim);
  seq_release_blocks(e, victim);
  list_push_head(&e->waiting, victim);
  e->preemptions++;
  LOG_DEBUG("preempted request %llu (%d tokens)", (unsigned long long)victim->id, victim->n_tokens);
}

/* Gives s blocks for every position < upto. When the pool is dry and may_preempt is set, the
 * newest running sequence (the tail: never one planned before s, which runs oldest first) is
 * preempted; returns -1 when s itself is the newest, or cannot preempt. */
static int ensure_blocks(twin_engine *e, seq *s, int upto, int may_preempt) {
  int need = (upto + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE;
  while (s->n_blocks < need) {
    int32_t b = twin_kv_pool_alloc(e->pool);
    if (b >= 0) {
      s->blocks[s->n_blocks++] = b;
      continue;
    }
    seq *victim = e->running.tail;
    if (!may_preempt || !victim || victim == s) return -1;
    preempt(e, victim);
  }
  return 0;
}

/* Prefix-cache lookup at admission: share the leading full blocks already computed, keeping at
 * least one token to compute (the step needs its logits). */
static void admit_prefix(twin_engine *e, seq *s) {
  int full = (s->n_tokens - 1) / TWIN_KV_BLOCK_SIZE;
  uint64_t h = 0;
  for (int i = 0; i < full; i++) {
    const int32_t *t = s->tokens + i * TWIN_KV_BLOCK_SIZE;
    uint64_t hi = twin_kv_block_hash(h, t);
    int32_t b = twin_kv_pool_lookup(e->pool, hi, t);
    if (b < 0) break;
    s->blocks[s->n_blocks++] = b;
    h = hi;
    s->n_hashed = s->n_blocks;
    s->last_hash = hi;
  }
  s->n_computed = s->n_blocks * TWIN_KV_BLOCK_SIZE;
  if (!s->ever_scheduled) s->cached_prompt = s->n_computed;
}

/* Fills the batch buffers; returns the number of sequences in it. */
static int plan_batch(twin_engine *e) {
  int budget = e->opts.max_tokens_per_step;
  int n = 0, t = 0;

  /* 1-2. running sequences: decodes (one token) and prefills (a chunk), oldest first */
  for (seq *s = e->running.head; s && budget > 0;) {
    int left = s->n_tokens - s->n_computed;
    int chunk = left < budget ? left : budget;
    if (chunk > e->opts.prefill_chunk) chunk = e->opts.prefill_chunk;
    if (ensure_blocks(e, s, s->n_computed + chunk, 1) != 0) {
      preempt(e, s); /* s was the newest: everyone older keeps going */
      break;
    }
    e->b_seqs[n] = s;
    e->b_chunk[n] = chunk;
    budget -= chunk;
    n++;
    s = s->next; /* read after ensure_blocks: preemption only removes sequences behind s */
  }

  /* 3. admit waiting requests in arrival order */
  while (e->waiting.head && budget > 0 && e->running.n < e->opts.max_batch) {
    seq *s = e->waiting.head;
    admit_prefix(e, s);
    int left = s->n_tokens - s->n_computed;
    int chunk = left < budget ? left : budget;
    if (chunk > e->opts.prefill_chunk) chunk = e->opts.prefill_chunk;
    if (ensure_blocks(e, s, s->n_computed + chunk, 0) != 0) {
      seq_release_blocks(e, s); /* keeps FCFS: nobody behind it goes first */
      break;
    }
    list_remove(&e->waiting, s);
    list_push_tail(&e->running, s);
    if (!s->t_first_sched) {
      s->t_first_sched = twin_time_mono_us();
      twin_histogram_observe(e->m.queue, (s->t_first_sched - s->t_arrival) / 1e6);
    }
    s->ever_scheduled = 1;
    e->b_seqs[n] = s;
    e->b_chunk[n] = chunk;
    budget -= chunk;
    n++;
  }

  /* lay the batch out */
  for (int i = 0; i < n; i++) {
    seq *s = e->b_seqs[i];
    e->b_seq_start[i] = t;
    for (int j = 0; j < e->b_chunk[i]; j++) {
      e->b_tokens[t] = s->tokens[s->n_computed + j];
      e->b_positions[t] = s->n_computed + j;
      t++;
    }
    e->b_seq_len[i] = s->n_computed + e->b_chunk[i];
    memcpy(e->b_tables + (size_t)i * e->max_blocks, s->blocks, (size_t)s->n_blocks * sizeof(int32_t));
  }
  e->b_seq_start[n] = t;
  return n;
}

static int is_eos(const twin_engine *e, int32_t tok) {
  for (int i = 0; i < e->n_eos; i++)
    if (e->eos[i] == tok) return 1;
  return 0;
}

/* Fills b_sampling and returns 1 when this step can sample on the device: the backend can, and
 * every sequence that gets a token this step (its prompt done with this chunk) is device_ok.
 * A sequence still mid-prompt gets greedy parameters; its token is ignored. */
static int plan_device_sampling(twin_engine *e, int n) {
  if (!e->device_sampling) return 0;
  for (int i = 0; i < n; i++) {
    const seq *s = e->b_seqs[i];
    if (s->n_computed + e->b_chunk[i] >= s->n_tokens && !s->device_ok) return 0;
  }
  for (int i = 0; i < n; i++) {
    const seq *s = e->b_seqs[i];
    if (s->device_ok) {
      e->b_sampling[i] = s->device;
      e->b_sampling[i].offset = (uint64_t)s->n_generated;
    } else {
      e->b_sampling[i] = (twin_backend_sampling){.temperature = 0.0f, .top_p = 1.0f};
    }
  }
  return 1;
}

/* A token the device chose: recorded in the sequence's sampler like one sampled here. */
static int accept_device_token(seq *s, int32_t token, twin_sample_result *r, twin_err *err) {
  memset(r, 0, sizeof *r);
  r->token = token;
  return twin_sampler_accept(s->sampler, token, err);
}

/* After the forward: bookkeeping, sampling and reports for each sequence in the batch. sampled
 * [n] holds the device's tokens, or is NULL: sample here from e->logits. */
static void finish_step(twin_engine *e, int n, const int32_t *sampled) {
  int64_t now = twin_time_mono_us();
  for (int i = 0; i < n; i++) {
    seq *s = e->b_seqs[i];
    int was_prompt = s->n_computed < s->n_prompt;
    int prompt_part = s->n_prompt - s->n_computed;
    if (prompt_part > e->b_chunk[i]) prompt_part = e->b_chunk[i];
    if (was_prompt && prompt_part > 0) twin_counter_add(e->m.prompt_tokens, prompt_part);
    s->n_computed += e->b_chunk[i];
    /* commit the blocks this step filled */
    while ((s->n_hashed + 1) * TWIN_KV_BLOCK_SIZE <= s->n_computed) {
      const int32_t *tk = s->tokens + s->n_hashed * TWIN_KV_BLOCK_SIZE;
      uint64_t h = twin_kv_block_hash(s->last_hash, tk);
      twin_kv_pool_commit(e->pool, s->blocks[s->n_hashed], h, tk);
      s->last_hash = h;
      s->n_hashed++;
    }
    if (s->n_computed < s->n_tokens) continue; /* mid-prompt chunk: no token yet */

    twin_sample_result r;
    twin_err err;
    int rc = sampled ? accept_device_token(s, sampled[i], &r, &err)
                     : twin_sampler_sample(s->sampler, e->scratch, e->logits + (size_t)i * e->vocab,
                                           &r, &err);
    if (rc != 0) {
      list_remove(&e->running, s);
      seq_finish(e, s, TWIN_FINISH_ERROR, err.msg);
      continue;
    }
    s->tokens[s->n_tokens++] = r.token;
    s->n_generated++;
    twin_counter_inc(e->m.generation_tokens);
    if (!s->t_first_token) {
      s->t_first_token = now;
      twin_histogram_observe(e->m.ttft, (now - s->t_arrival) / 1e6);
    } else {
      twin_histogram_observe(e->m.itl, (now - s->t_last_token) / 1e6);
    }
    s->t_last_token = now;

    twin_finish_reason why = TWIN_FINISH_NONE;
    int eos = !s->ignore_eos && is_eos(e, r.token);
    twin_buf_reset(&e->text);
    if (eos) {
      why = TWIN_FINISH_STOP;
    } else {
      int stop = twin_seq_text_push(s->text, r.token, &e->text, &err);
      if (stop < 0) {
        list_remove(&e->running, s);
        seq_finish(e, s, TWIN_FINISH_ERROR, err.msg);
        continue;
      }
      if (stop) why = TWIN_FINISH_STOP;
      else if (s->n_generated >= s->max_new) why = TWIN_FINISH_LENGTH;
    }
    twin_gen_event ev = {0};
    ev.n_tokens = 1;
    ev.tokens = &r.token;
    ev.samples = s->want_logprobs ? &r : NULL;
    ev.text = twin_buf_cstr(&e->text);
    ev.text_len = e->text.len;
    s->cb(s->user, &ev);
    if (why != TWIN_FINISH_NONE) {
      list_remove(&e->running, s);
      seq_finish(e, s, why, NULL);
    }
  }
}

static void handle_cancels(twin_engine *e, uint64_t *ids, int n) {
  for (int k = 0; k < n; k++) {
    seq_list *lists[] = {&e->running, &e->waiting};
    for (int l = 0; l < 2; l++)
      for (seq *s = lists[l]->head; s; s = s->next)
        if (s->id == ids[k]) {
          list_remove(lists[l], s);
          seq_finish(e, s, TWIN_FINISH_CANCELLED, NULL);
          goto next;
        }
  next:;
  }
}

static void *engine_main(void *arg) {
  twin_engine *e = arg;
  uint64_t *cancels = NULL;
  int cap = 0;
  for (;;) {
    pthread_mutex_lock(&e->mu);
    while (!e->stopping && !e->inbox.n && !e->n_cancels && !e->running.n && !e->waiting.n)
      pthread_cond_wait(&e->cv, &e->mu);
    int stopping = e->stopping;
    while (e->inbox.head) {
      seq *s = e->inbox.head;
      list_remove(&e->inbox, s);
      list_push_tail(&e->waiting, s);
    }
    int nc = e->n_cancels;
    if (nc > cap) {
      uint64_t *c = realloc(cancels, (size_t)nc * sizeof *c);
      if (c) {
        cancels = c;
        cap = nc;
      } else {
        nc = cap;
      }
    }
    if (nc) memcpy(cancels, e->cancels, (size_t)nc * sizeof *cancels);
    e->n_cancels = 0;
    pthread_mutex_unlock(&e->mu);

    handle_cancels(e, cancels, nc);
    if (stopping) break;
    int n = plan_batch(e);
    if (n > 0) {
      twin_batch b = {
          .n_tokens = e->b_seq_start[n],
          .n_seqs = n,
          .tokens = e->b_tokens,
          .positions = e->b_positions,
          .seq_start = e->b_seq_start,
          .seq_len = e->b_seq_len,
          .block_tables = e->b_tables,
          .max_blocks = e->max_blocks,
          .all_logits = 0,
      };
      twin_err err;
      int on_device = plan_device_sampling(e, n);
      int rc = on_device ? twin_backend_forward_sample(e->backend, &b, e->b_sampling, e->b_sampled, &err)
                         : twin_backend_forward(e->backend, &b, e->logits, &err);
      if (rc != 0) {
        LOG_ERROR("forward failed: %s", err.msg);
        for (int i = 0; i < n; i++) {
          list_remove(&e->running, e->b_seqs[i]);
          seq_finish(e, e->b_seqs[i], TWIN_FINISH_ERROR, err.msg);
        }
      } else {
        finish_step(e, n, on_device ? e->b_sampled : NULL);
      }
      e->steps++;
    }
    publish_stats(e);
  }
  /* stopping: end everything still here */
  while (e->running.head) {
    seq *s = e->running.head;
    list_remove(&e->running, s);
    seq_finish(e, s, TWIN_FINISH_CANCELLED, "the server is shutting down");
  }
  pthread_mutex_lock(&e->mu);
  while (e->inbox.head) {
    seq *s = e->inbox.head;
    list_remove(&e->inbox, s);
    list_push_tail(&e->waiting, s);
  }
  pthread_mutex_unlock(&e->mu);
  while (e->waiting.head) {
    seq *s = e->waiting.head;
    list_remove(&e->waiting, s);
    seq_finish(e, s, TWIN_FINISH_CANCELLED, "the server is shutting down");
  }
  publish_stats(e);
  free(cancels);
  return NULL;
}

/* ==== create / destroy ====================================================================== */

int twin_engine_create(twin_backend *backend, const twin_tokenizer *tok, const int32_t *eos_ids,
                       int n_eos, const twin_engine_opts *opts, twin_engine **out, twin_err *err) {
  *out = NULL;
  twin_engine *e = calloc(1, sizeof *e);
  if (!e) return twin_err_set(err, TWIN_ENOMEM, "engine: out of memory");
  e->backend = backend;
  e->tok = tok;
  e->vocab = backend->cfg.vocab_size;
  for (int i = 0; i < n_eos && e->n_eos < TWIN_MAX_EOS; i++) e->eos[e->n_eos++] = eos_ids[i];
  twin_engine_opts o = opts ? *opts : (twin_engine_opts){0};
  if (o.max_batch <= 0) o.max_batch = 64;
  if (o.max_batch > backend->max_seqs) o.max_batch = backend->max_seqs;
  if (o.max_queue <= 0) o.max_queue = 256;
  if (o.max_context <= 0 || o.max_context > backend->cfg.max_seq_len) o.max_context = backend->cfg.max_seq_len;
  if (o.max_new_tokens_limit <= 0 || o.max_new_tokens_limit > o.max_context) o.max_new_tokens_limit = o.max_context;
  if (o.default_max_new_tokens <= 0) o.default_max_new_tokens = 256;
  if (o.default_max_new_tokens > o.max_new_tokens_limit) o.default_max_new_tokens = o.max_new_tokens_limit;
  if (o.max_tokens_per_step <= 0) o.max_tokens_per_step = 512;
  if (o.max_tokens_per_step > backend->max_tokens_per_step) o.max_tokens_per_step = backend->max_tokens_per_step;
  if (o.prefill_chunk <= 0 || o.prefill_chunk > o.max_tokens_per_step) o.prefill_chunk = o.max_tokens_per_step;
  if (backend->num_blocks < 2) {
    free(e);
    return twin_err_set(err, TWIN_EINVAL, "engine: the KV pool has %d blocks; it needs at least 2",
                        backend->num_blocks);
  }
  /* One sequence must always fit in the pool alone, or preemption could never make room. */
  if (o.max_context > backend->num_blocks * TWIN_KV_BLOCK_SIZE) {
    LOG_WARN("engine: context limit lowered from %d to %d tokens to fit the KV pool (%d blocks)",
             o.max_context, backend->num_blocks * TWIN_KV_BLOCK_SIZE, backend->num_blocks);
    o.max_context = backend->num_blocks * TWIN_KV_BLOCK_SIZE;
    if (o.max_new_tokens_limit > o.max_context) o.max_new_tokens_limit = o.max_context;
    if (o.default_max_new_tokens > o.max_new_tokens_limit) o.default_max_new_tokens = o.max_new_tokens_limit;
  }
  e->opts = o;
  e->max_blocks = (o.max_context + TWIN_KV_BLOCK_SIZE - 1) / TWIN_KV_BLOCK_SIZE;
  e->pool = twin_kv_pool_create(backend->num_blocks);
  size_t nb = (size_t)o.max_batch;
  e->b_tokens = malloc((size_t)o.max_tokens_per_step * sizeof(int32_t));
  e->b_positions = malloc((size_t)o.max_tokens_per_step * sizeof(int32_t));
  e->b_seq_start = malloc((nb + 1) * sizeof(int32_t));
  e->b_seq_len = malloc(nb * sizeof(int32_t));
  e->b_tables = calloc(nb * (size_t)e->max_blocks, sizeof(int32_t));
  e->b_seqs = malloc(nb * sizeof(seq *));
  e->b_chunk = malloc(nb * sizeof(int));
  e->logits = malloc(nb * (size_t)e->vocab * sizeof(float));
  e->b_sampling = malloc(nb * sizeof *e->b_sampling);
  e->b_sampled = malloc(nb * sizeof *e->b_sampled);
  const char *device_env = getenv("TWIN_DEVICE_SAMPLING");
  e->device_sampling = twin_backend_can_sample(backend) && !(device_env && strcmp(device_env, "0") == 0);
  twin_buf_init(&e->text);
  int rc = twin_sampler_scratch_create(e->vocab, &e->scratch, err);
  if (rc == 0 && (!e->pool || !e->b_tokens || !e->b_positions || !e->b_seq_start || !e->b_seq_len ||
                  !e->b_tables || !e->b_seqs || !e->b_chunk || !e->logits || !e->b_sampling ||
                  !e->b_sampled))
    rc = twin_err_set(err, TWIN_ENOMEM, "engine: out of memory for batch buffers");
  if (rc) {
    e->stopping = 1;
    twin_engine_destroy(e);
    return rc;
  }
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  metrics_setup(e);
  publish_stats(e);
  if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
    e->stopping = 1;
    twin_engine_destroy(e);
    return twin_err_set(err, TWIN_EINTERNAL, "engine: cannot start the loop thread");
  }
  *out = e;
  return 0;
}

void twin_engine_destroy(twin_engine *e) {
  if (!e) return;
  if (!e->stopping) {
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
  }
  twin_kv_pool_destroy(e->pool);
  twin_sampler_scratch_destroy(e->scratch);
  free(e->b_tokens);
  free(e->b_positions);
  free(e->b_seq_start);
  free(e->b_seq_len);
  free(e->b_tables);
  free(e->b_seqs);
  free(e->b_chunk);
  free(e->logits);
  free(e->b_sampling);
  free(e->b_sampled);
  free(e->cancels);
  twin_buf_free(&e->text);
  free(e);
}
