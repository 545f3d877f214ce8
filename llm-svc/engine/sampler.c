/* llm-svc/engine/sampler.c — token sampling for one sequence (see sampler.h for the order of
 * operations). Work is a few O(vocab) scans and no full sort: top-k keeps a k-entry heap in one
 * pass (quickselect for large k) and sorts those k; top-p bins tokens by log-distance from the
 * top, finds the bin where the mass crosses top_p, and sorts that bin only; min-p is a filter.
 * Penalties touch only the tokens in the sequence's hash table. */
#include "llm-svc/engine/sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ==== generator: xoshiro256** seeded through splitmix64 =================================== */
/* Our own few lines rather than libc's rand()/random_r(), whose algorithms differ between C
 * libraries: the same seed must give the same tokens on every build. xoshiro256** (Blackman
 * and Vigna) is a small, fast generator with a 256-bit state and no known statistical flaws
 * at this use; splitmix64 expands the 64-bit request seed into that state, which is the
 * seeding its authors recommend (nearby seeds give unrelated streams; never all zeros). */

typedef struct rng256 {
  uint64_t s[4];
} rng256;

static uint64_t splitmix64_next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng256 *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl64(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl64(s[3], 45);
  return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(rng256 *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static void rng_seed(rng256 *r, uint64_t seed) {
  uint64_t sm = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64_next(&sm);
}

static uint64_t os_seed(const void *salt) {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) == (ssize_t)sizeof seed) return seed;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) ^ (uint64_t)(uintptr_t)salt;
}

/* ==== parameters =========================================================================== */

void twin_sampling_params_default(twin_sampling_params *p) {
  memset(p, 0, sizeof *p);
  p->temperature = 1.0f;
  p->top_k = 0;
  p->top_p = 1.0f;
  p->min_p = 0.0f;
  p->repetition_penalty = 1.0f;
}

int twin_sampling_params_validate(const twin_sampling_params *p, twin_err *err) {
  if (!p) return twin_err_set(err, TWIN_EINVAL, "sampling parameters are missing");
  /* Written as !(ok) so that NaN fails every test. */
  if (!(p->temperature >= 0.0f) || isinf(p->temperature))
    return twin_err_set(err, TWIN_EINVAL, "temperature must be a finite number >= 0 (got %g)",
                        (double)p->temperature);
  if (p->top_k < 0)
    return twin_err_set(err, TWIN_EINVAL, "top_k must be >= 0, 0 = off (got %d)", p->top_k);
  if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
    return twin_err_set(err, TWIN_EINVAL, "top_p must be in (0, 1], 1 = off (got %g)",
                        (double)p->top_p);
  if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
    return twin_err_set(err, TWIN_EINVAL, "min_p must be in [0, 1], 0 = off (got %g)",
                        (double)p->min_p);
  if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
    return twin_err_set(err, TWIN_EINVAL,
                        "repetition_penalty must be a finite number > 0, 1 = off (got %g)",
                        (double)p->repetition_penalty);
  if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
    return twin_err_set(err, TWIN_EINVAL, "presence_penalty must be in [-2, 2] (got %g)",
                        (double)p->presence_penalty);
  if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
    return twin_err_set(err, TWIN_EINVAL, "frequency_penalty must be in [-2, 2] (got %g)",
                        (double)p->frequency_penalty);
  if (p->top_logprobs < 0 || p->top_logprobs > TWIN_SAMPLER_MAX_LOGPROBS)
    return twin_err_set(err, TWIN_EINVAL, "top_logprobs must be in [0, %d] (got %d)",
                        TWIN_SAMPLER_MAX_LOGPROBS, p->top_logprobs);
  if (p->top_logprobs > 0 && !p->logprobs)
    return twin_err_set(err, TWIN_EINVAL, "top_logprobs (%d) needs logprobs to be on",
                        p->top_logprobs);
  return TWIN_OK;
}

/* ==== state ================================================================================ */

/* One distinct token seen by the sequence. */
typedef struct seen_token {
  int32_t token;      /* -1 = empty slot */
  uint32_t out_count; /* times generated */
  uint32_t in_prompt; /* 1 if in the prompt */
} seen_token;

struct twin_sampler {
  twin_sampling_params params;
  int vocab_size;
  int track_tokens;   /* a penalty is active */
  rng256 rng;
  seen_token *seen;   /* [seen_cap] open addressing, linear probing; NULL until first token */
  uint32_t seen_cap;  /* power of two, or 0 */
  uint32_t seen_used;
};

/* A logit (or, after tempering, an unnormalized probability) and its token id. */
typedef struct logit_pair {
  float z;
  int32_t id;
} logit_pair;

#define NUCLEUS_BINS_DECL (32 * 64 + 1) /* = NUCLEUS_BINS below */

struct twin_sampler_scratch {
  int capacity;
  logit_pair *pairs;                   /* [capacity] */
  double bin_mass[NUCLEUS_BINS_DECL];  /* top-p: probability mass per log-distance bin */
};

int twin_sampler_scratch_create(int vocab_size, twin_sampler_scratch **out, twin_err *err) {
  *out = NULL;
  if (vocab_size <= 0)
    return twin_err_set(err, TWIN_EINVAL, "sampler scratch: vocab_size must be > 0 (got %d)",
                        vocab_size);
  twin_sampler_scratch *sc = calloc(1, sizeof *sc);
  if (!sc) return twin_err_set(err, TWIN_ENOMEM, "sampler scratch: out of memory");
  sc->pairs = malloc((size_t)vocab_size * sizeof *sc->pairs);
  if (!sc->pairs) {
    free(sc);
    return twin_err_set(err, TWIN_ENOMEM, "sampler scratch: out of memory for %d entries",
                        vocab_size);
  }
  sc->capacity = vocab_size;
  *out = sc;
  return TWIN_OK;
}

void twin_sampler_scratch_destroy(twin_sampler_scratch *scratch) {
  if (!scratch) return;
  free(scratch->pairs);
  free(scratch);
}

int twin_sampler_create(const twin_sampling_params *params, int vocab_size, twin_sampler **out,
                        twin_err *err) {
  *out = NULL;
  int rc = twin_sampling_params_validate(params, err);
  if (rc) return rc;
  if (vocab_size <= 0)
    return twin_err_set(err, TWIN_EINVAL, "sampler: vocab_size must be > 0 (got %d)",
                        vocab_size);
  twin_sampler *s = calloc(1, sizeof *s);
  if (!s) return twin_err_set(err, TWIN_ENOMEM, "sampler: out of memory");
  s->params = *params;
  s->vocab_size = vocab_size;
  s->track_tokens = params->repetition_penalty != 1.0f || params->presence_penalty != 0.0f ||
                    params->frequency_penalty != 0.0f;
  rng_seed(&s->rng, params->has_seed ? params->seed : os_seed(s));
  *out = s;
  return TWIN_OK;
}

void twin_sampler_destroy(twin_sampler *s) {
  if (!s) return;
  free(s->seen);
  free(s);
}

size_t twin_sampler_memory_bytes(const twin_sampler *s) {
  return sizeof *s + (size_t)s->seen_cap * sizeof(seen_token);
}

/* ==== seen-token table ===================================================================== */

static inline uint32_t seen_slot(int32_t token, uint32_t cap) {
  uint32_t h = (uint32_t)token * 2654435769u; /* Fibonacci hashing */
  return (h ^ (h >> 15)) & (cap - 1);
}

static seen_token *seen_find(const twin_sampler *s, int32_t token) {
  if (!s->seen_cap) return NULL;
  for (uint32_t i = seen_slot(token, s->seen_cap);; i = (i + 1) & (s->seen_cap - 1)) {
    if (s->seen[i].token == token) return &s->seen[i];
    if (s->seen[i].token < 0) return NULL;
  }
}

static int seen_grow(twin_sampler *s) {
  uint32_t cap = s->seen_cap ? s->seen_cap * 2 : 64;
  seen_token *table = malloc((size_t)cap * sizeof *table);
  if (!table) return TWIN_ENOMEM;
  for (uint32_t i = 0; i < cap; i++) table[i] = (seen_token){-1, 0, 0};
  for (uint32_t j = 0; j < s->seen_cap; j++) {
    if (s->seen[j].token < 0) continue;
    uint32_t i = seen_slot(s->seen[j].token, cap);
    while (table[i].token >= 0) i = (i + 1) & (cap - 1);
    table[i] = s->seen[j];
  }
  free(s->seen);
  s->seen = table;
  s->seen_cap = cap;
  return TWIN_OK;
}

/* The entry for token, inserted when absent; NULL when out of memory. Load stays <= 1/2. */
static seen_token *seen_upsert(twin_sampler *s, int32_t token) {
  seen_token *e = seen_find(s, token);
  if (e) return e;
  if ((s->seen_used + 1) * 2 > s->seen_cap && seen_grow(s)) return NULL;
  uint32_t i = seen_slot(token, s->seen_cap);
  while (s->seen[i].token >= 0) i = (i + 1) & (s->seen_cap - 1);
  s->seen[i] = (seen_token){token, 0, 0};
  s->seen_used++;
  return &s->seen[i];
}

int twin_sampler_add_prompt(twin_sampler *s, const int32_t *tokens, int n_tokens, twin_err *err) {
  if (n_tokens < 0)
    return twin_err_set(err, TWIN_EINVAL, "sampler: n_tokens must be >= 0 (got %d)", n_tokens);
  for (int i = 0; i < n_tokens; i++)
    if (tokens[i] < 0 || tokens[i] >= s->vocab_size)
      return twin_err_set(err, TWIN_EINVAL,
                          "sampler: prompt token %d is %d, outside the vocabulary [0, %d)", i,
                          (int)tokens[i], s->vocab_size);
  if (!s->track_tokens) return TWIN_OK;
  for (int i = 0; i < n_tokens; i++) {
    seen_token *e = seen_upsert(s, tokens[i]);
    if (!e) return twin_err_set(err, TWIN_ENOMEM, "sampler: out of memory recording the prompt");
    e->in_prompt = 1;
  }
  return TWIN_OK;
}

int twin_sampler_accept(twin_sampler *s, int32_t token, twin_err *err) {
  if (token < 0 || token >= s->vocab_size)
    return twin_err_set(err, TWIN_EINVAL, "sampler: token %d is outside the vocabulary [0, %d)",
                        (int)token, s->vocab_size);
  if (!s->track_tokens) return TWIN_OK;
  seen_token *e = seen_upsert(s, token);
  if (!e) return twin_err_set(err, TWIN_ENOMEM, "sampler: out of memory recording a token");
  if (e->out_count < UINT32_MAX) e->out_count++;
  return TWIN_OK;
}

/* ==== penalties ============================================================================ */

static inline float penalize(const twin_sampling_params *p, float z, const seen_token *e) {
  float r = p->repetition_penalty;
  if (r != 1.0f) z = z > 0.0f ? z / r : z * r; /* every table entry is in prompt or output */
  if (e->out_count) {
    z -= p->frequency_penalty * (float)e->out_count;
    z -= p->presence_penalty;
  }
  /* A tiny repetition penalty could overflow a large logit; keep it finite (−inf stays). */
  if (z > FLT_MAX) z = FLT_MAX;
  return z;
}

void twin_sampler_apply_penalties(const twin_sampler *s, float *logits) {
  if (!s->track_tokens) return;
  for (uint32_t i = 0; i < s->seen_cap; i++) {
    const seen_token *e = &s->seen[i];
    if (e->token >= 0) logits[e->token] = penalize(&s->params, logits[e->token], e);
  }
}

static void penalize_pairs(const twin_sampler *s, logit_pair *pairs) {
  /* pairs[i].id == i here: pairs are laid out in vocabulary order before any selection. */
  for (uint32_t i = 0; i < s->seen_cap; i++) {
    const seen_token *e = &s->seen[i];
    if (e->token >= 0) pairs[e->token].z = penalize(&s->params, pairs[e->token].z, e);
  }
}

/* ==== selection ============================================================================ */
/* A total order on (penalized logit, id): larger logit first, lower id on ties. Every
 * selection follows it, so results are deterministic and a single survivor is always the
 * greedy choice. */

static inline int ranks_before(logit_pair a, logit_pair b) {
  return a.z > b.z || (a.z == b.z && a.id < b.id);
}

static int pair_compare_desc(const void *pa, const void *pb) {
  logit_pair a = *(const logit_pair *)pa, b = *(const logit_pair *)pb;
  return ranks_before(a, b) ? -1 : ranks_before(b, a) ? 1 : 0;
}

static inline void pair_swap(logit_pair *a, logit_pair *b) {
  logit_pair t = *a;
  *a = *b;
  *b = t;
}

/* Min-heap on rank (the lowest-ranked kept entry at the root) over h[0..k). */
static void heap_sift_down(logit_pair *h, int k, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, worst = i;
    if (l < k && ranks_before(h[worst], h[l])) worst = l;
    if (r < k && ranks_before(h[worst], h[r])) worst = r;
    if (worst == i) return;
    pair_swap(&h[i], &h[worst]);
    i = worst;
  }
}

/* Reorders a[0..n) so that a[0..k) hold the k highest-ranked entries (in no order). Small k:
 * one pass with a k-entry heap in a[0..k), where almost every entry is rejected by a single
 * comparison with the root. Large k: quickselect (median-of-three), finishing with a sort of
 * the remaining range if a pathological input takes too many rounds (O(n log n) bound). */
static void select_top(logit_pair *a, int n, int k) {
  if (k <= 0 || k >= n) return;
  if (k <= 1024) {
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift_down(a, k, i);
    for (int i = k; i < n; i++)
      if (ranks_before(a[i], a[0])) {
        a[0] = a[i];
        heap_sift_down(a, k, 0);
      }
    return;
  }
  int lo = 0, hi = n - 1, target = k - 1, rounds = 0;
  while (lo < hi) {
    if (++rounds > 64) {
      qsort(a + lo, (size_t)(hi - lo + 1), sizeof *a, pair_compare_desc);
      return;
    }
    int mid = lo + (hi - lo) / 2;
    if (ranks_before(a[mid], a[lo])) pair_swap(&a[mid], &a[lo]);
    if (ranks_before(a[hi], a[lo])) pair_swap(&a[hi], &a[lo]);
    if (ranks_before(a[hi], a[mid])) pair_swap(&a[hi], &a[mid]);
    logit_pair pivot = a[mid];
    int i = lo, j = hi;
    while (i <= j) {
      while (ranks_before(a[i], pivot)) i++;
      while (ranks_before(pivot, a[j])) j--;
      if (i <= j) {
        pair_swap(&a[i], &a[j]);
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return;
  }
}

/* Draws from a[0..n) with weights a[j].z (total given), using u in [0, 1). */
static int32_t draw_weighted(const logit_pair *a, int n, double total, double u) {
  double r = u * total, cum = 0.0;
  for (int j = 0; j < n; j++) {
    cum += a[j].z;
    if (r < cum) return a[j].id;
  }
  for (int j = n - 1; j > 0; j--) /* rounding left r at the very top: last non-zero weight */
    if (a[j].z > 0.0f) return a[j].id;
  return a[0].id;
}

/* ==== top-p over the whole vocabulary ====================================================== */
/* Tokens are binned by d = (max - z) / T, their distance from the top in log-probability,
 * 64 bins per nat over [0, 32) and one bin beyond: one pass gives each bin's mass, the bin
 * where the cumulative mass crosses top_p is found by walking the bins, every token in an
 * earlier bin is kept unsorted, and only the tokens of the crossing bin are sorted and
 * scanned. A peaked distribution sorts a handful of entries; a flat one, one bin. */

#define NUCLEUS_BINS_PER_NAT 64
#define NUCLEUS_BINS (32 * NUCLEUS_BINS_PER_NAT + 1)

static inline float distance_from_top(float max_z, float z, float inv_t) {
  return (max_z - z) * inv_t;
}

static inline int nucleus_bin(float d) {
  return d < 32.0f ? (int)(d * (float)NUCLEUS_BINS_PER_NAT) : NUCLEUS_BINS - 1;
}

/* On pairs[0..n) holding penalized logits, moves the nucleus (in rank order within the
 * crossing bin, unordered before it) to the front and returns its size. */
static int nucleus_select(logit_pair *pairs, int n, float max_z, float inv_t, double top_p,
                          double *bin_mass /* [NUCLEUS_BINS] */) {
  memset(bin_mass, 0, NUCLEUS_BINS * sizeof *bin_mass);
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    float d = distance_from_top(max_z, pairs[i].z, inv_t);
    float w = expf(-d);
    total += w;
    bin_mass[nucleus_bin(d)] += w;
  }
  double target = top_p * total, cum_before = 0.0;
  int crossing = NUCLEUS_BINS - 1;
  for (int b = 0; b < NUCLEUS_BINS; b++) {
    if (cum_before + bin_mass[b] >= target) {
      crossing = b;
      break;
    }
    cum_before += bin_mass[b];
  }
  /* Keep bins <= crossing, with the crossing bin's tokens moved to the end of the kept run. */
  int kept = 0;
  for (int i = 0; i < n; i++)
    if (nucleus_bin(distance_from_top(max_z, pairs[i].z, inv_t)) <= crossing)
      pairs[kept++] = pairs[i];
  int lo = 0, hi = kept - 1;
  while (lo <= hi) {
    if (nucleus_bin(distance_from_top(max_z, pairs[lo].z, inv_t)) < crossing) lo++;
    else pair_swap(&pairs[lo], &pairs[hi--]);
  }
  int first_crossing = lo;
  qsort(pairs + first_crossing, (size_t)(kept - first_crossing), sizeof *pairs, pair_compare_desc);
  double cum = cum_before;
  for (int j = first_crossing; j < kept; j++) {
    cum += expf(-distance_from_top(max_z, pairs[j].z, inv_t));
    if (cum >= target) return j + 1;
  }
  return kept;
}

_Static_assert(NUCLEUS_BINS == NUCLEUS_BINS_DECL, "scratch bin array size");

/* ==== sampling ============================================================================= */

/* Fills pairs[i] = {logits[i], i}; fails on NaN / +inf. */
static int fill_pairs(logit_pair *pairs, const float *logits, int n, twin_err *err) {
  int bad = 0;
  for (int i = 0; i < n; i++) {
    float v = logits[i];
    bad |= !(v < INFINITY);
    pairs[i].z = v;
    pairs[i].id = i;
  }
  if (!bad) return TWIN_OK;
  for (int i = 0; i < n; i++)
    if (!(logits[i] < INFINITY))
      return twin_err_set(err, TWIN_EINVAL, "sampler: logits[%d] is %s", i,
                          isnan(logits[i]) ? "NaN" : "+inf");
  return TWIN_EINTERNAL;
}

/* Argmax of a logits row, lowest id on ties; fails on NaN / +inf / all -inf. */
static int argmax_logits(const float *logits, int n, int32_t *best, twin_err *err) {
  int b = -1, bad = 0;
  float m = -INFINITY;
  for (int i = 0; i < n; i++) {
    float v = logits[i];
    bad |= !(v < INFINITY);
    if (v > m) {
      m = v;
      b = i;
    }
  }
  if (bad)
    for (int i = 0; i < n; i++)
      if (!(logits[i] < INFINITY))
        return twin_err_set(err, TWIN_EINVAL, "sampler: logits[%d] is %s", i,
                            isnan(logits[i]) ? "NaN" : "+inf");
  if (b < 0) return twin_err_set(err, TWIN_EINVAL, "sampler: every logit is -inf");
  *best = b;
  return TWIN_OK;
}

static int argmax_pairs(const logit_pair *pairs, int n, int32_t *best, float *max_out,
                        twin_err *err) {
  int b = -1;
  float m = -INFINITY;
  for (int i = 0; i < n; i++)
    if (pairs[i].z > m) {
      m = pairs[i].z;
      b = i;
    }
  if (b < 0) return twin_err_set(err, TWIN_EINVAL, "sampler: every logit is -inf");
  *best = pairs[b].id;
  *max_out = m;
  return TWIN_OK;
}

/* Turns pairs[0..n) from logits into weights exp((z - max) / T) (the max becomes exactly 1),
 * drops those below min_p when it is on, and returns how many remain; *total gets their sum.
 * The weights keep the pairs' relative order. */
static int to_weights(logit_pair *pairs, int n, float max_z, float inv_t, float min_p,
                      double *total) {
  double sum = 0.0;
  int kept = 0;
  for (int i = 0; i < n; i++) {
    float w = expf(-distance_from_top(max_z, pairs[i].z, inv_t));
    /* p_i >= min_p * p_max  <=>  w_i >= min_p, since w_max = 1 */
    if (min_p > 0.0f && w < min_p) continue;
    pairs[kept].id = pairs[i].id;
    pairs[kept].z = w;
    kept++;
    sum += w;
  }
  *total = sum;
  return kept;
}

/* Steps 2-6 of sampler.h on penalized pairs (in vocabulary order) whose maximum is max_z. The
 * kept sets of top-k, top-p and min-p are all prefixes of the rank order, so each step cuts the
 * previous one's set. */
static int32_t sample_tempered(const twin_sampling_params *p, logit_pair *pairs, int n_vocab,
                               float max_z, double u, double *bin_mass) {
  float inv_t = 1.0f / p->temperature;
  int top_k = (p->top_k > 0 && p->top_k < n_vocab) ? p->top_k : 0;
  double total = 0.0;
  int n;
  if (top_k) {
    select_top(pairs, n_vocab, top_k);
    qsort(pairs, (size_t)top_k, sizeof *pairs, pair_compare_desc);
    n = to_weights(pairs, top_k, max_z, inv_t, 0.0f, &total);
    if (p->top_p < 1.0f) {
      /* over the distribution renormalized on the top k */
      double target = (double)p->top_p * total, cum = 0.0;
      for (int j = 0; j < n; j++) {
        cum += pairs[j].z;
        if (cum >= target) {
          n = j + 1;
          break;
        }
      }
    }
    if (p->min_p > 0.0f) {
      int keep = 1;
      while (keep < n && pairs[keep].z >= p->min_p) keep++;
      n = keep;
    }
    total = 0.0;
    for (int j = 0; j < n; j++) total += pairs[j].z;
    return draw_weighted(pairs, n, total, u);
  }
  n = n_vocab;
  if (p->top_p < 1.0f) n = nucleus_select(pairs, n, max_z, inv_t, p->top_p, bin_mass);
  n = to_weights(pairs, n, max_z, inv_t, p->min_p, &total);
  return draw_weighted(pairs, n, total, u);
}

/* Raw log-probabilities: of token, and the top n alternatives (a heap of n <= 20 entries fed
 * straight from the row). */
static void raw_logprobs(const float *logits, int n_vocab, int32_t token, int n_top,
                         twin_sample_result *out) {
  float m = -INFINITY;
  for (int i = 0; i < n_vocab; i++)
    if (logits[i] > m) m = logits[i];
  double sum = 0.0;
  for (int i = 0; i < n_vocab; i++) sum += expf(logits[i] - m);
  double lse = (double)m + log(sum);
  out->logprob = (float)((double)logits[token] - lse);
  if (n_top > n_vocab) n_top = n_vocab;
  if (n_top <= 0) return;
  logit_pair heap[TWIN_SAMPLER_MAX_LOGPROBS];
  for (int i = 0; i < n_top; i++) heap[i] = (logit_pair){logits[i], i};
  for (int i = n_top / 2 - 1; i >= 0; i--) heap_sift_down(heap, n_top, i);
  for (int i = n_top; i < n_vocab; i++) {
    logit_pair c = {logits[i], i};
    if (ranks_before(c, heap[0])) {
      heap[0] = c;
      heap_sift_down(heap, n_top, 0);
    }
  }
  qsort(heap, (size_t)n_top, sizeof *heap, pair_compare_desc);
  for (int j = 0; j < n_top; j++) {
    out->top_tokens[j] = heap[j].id;
    out->top_logprobs[j] = (float)((double)heap[j].z - lse);
  }
  out->n_top = n_top;
}

int twin_sampler_sample(twin_sampler *s, twin_sampler_scratch *scratch, const float *logits,
                        twin_sample_result *out, twin_err *err) {
  memset(out, 0, sizeof *out);
  const twin_sampling_params *p = &s->params;
  int n_vocab = s->vocab_size;
  if (!scratch || scratch->capacity < n_vocab)
    return twin_err_set(err, TWIN_EINVAL, "sampler: scratch holds %d entries, vocab is %d",
                        scratch ? scratch->capacity : 0, n_vocab);
  logit_pair *pairs = scratch->pairs; /* [n_vocab] */
  int32_t token = -1;
  int rc;
  int greedy = p->temperature < TWIN_SAMPLER_GREEDY_BELOW;
  if (greedy && !s->track_tokens) {
    rc = argmax_logits(logits, n_vocab, &token, err);
    if (rc) return rc;
  } else {
    rc = fill_pairs(pairs, logits, n_vocab, err);
    if (rc) return rc;
    if (s->track_tokens) penalize_pairs(s, pairs);
    float max_z = 0.0f;
    rc = argmax_pairs(pairs, n_vocab, &token, &max_z, err);
    if (rc) return rc;
    if (!greedy) {
      double u = rng_uniform(&s->rng);
      token = sample_tempered(p, pairs, n_vocab, max_z, u, scratch->bin_mass);
    }
  }
  out->token = token;
  if (p->logprobs) raw_logprobs(logits, n_vocab, token, p->top_logprobs, out);
  return twin_sampler_accept(s, token, err);
}
