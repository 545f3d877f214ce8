/* llm-svc/engine/sampler.h — per-request token sampling over one row of logits: repetition,
 * presence and frequency penalties, temperature, top-k, top-p, min-p, a seeded generator, and
 * log-probabilities of the chosen token and of the most probable alternatives. */

/* Order of operations (as Hugging Face transformers and vLLM apply them):
 *   1. penalties, on a scratch copy of the logits (never on the caller's row):
 *      repetition (HF/CTRL: a positive logit is divided by r, a negative one multiplied by r,
 *      over every token seen in the prompt or the output), then frequency and presence
 *      (OpenAI: logit -= frequency * count + presence * [count > 0], over generated tokens);
 *   2. temperature: temperature 0 (or below 1e-5, as vLLM) is greedy, the argmax of the
 *      penalized logits (lowest id on ties, as torch.argmax), and steps 3-6 do not apply;
 *   3. top-k: keep the k largest (ties broken by lower id);
 *   4. top-p: over the distribution renormalized on what top-k kept, keep the most probable
 *      tokens while the mass of the tokens before them is < top_p (at least one is kept);
 *   5. min-p: keep tokens whose probability is >= min_p times the most probable one's;
 *   6. sample from the renormalized survivors with one uniform draw.
 * (vLLM's V1 sampler applies min-p before top-k/top-p; the sets differ only through top-p's
 * renormalization. We follow the transformers order, which the request API documents.)
 *
 * Log-probabilities are those of the model's raw distribution (log-softmax of the logits as
 * given, before penalties and temperature): vLLM's default "raw" mode and what OpenAI's API
 * reports for the chosen token and the top alternatives.
 *
 * Memory. A sampler (one per sequence) holds its parameters, 32 bytes of generator state and,
 * only when a penalty is active, a hash table of the distinct tokens seen: 12 bytes per slot,
 * slots = the power of two >= 2 x distinct tokens (a 4k-token prompt with ~1.5k distinct
 * tokens: 4096 slots, 48 KiB). Dense counts over a 128k vocabulary would cost 512 KiB per
 * sequence, 128 MiB for 256 sequences, for tables that are almost all zeros. The O(vocab)
 * working memory lives in a twin_sampler_scratch (8 bytes per vocabulary entry plus 16 KiB:
 * about 1 MiB for 128k) that one thread reuses for every sequence it samples.
 *
 * Threads: a sampler and a scratch are used by one thread at a time; distinct samplers and
 * scratches are independent. */
#ifndef TWIN_ENGINE_SAMPLER_H
#define TWIN_ENGINE_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define TWIN_SAMPLER_MAX_LOGPROBS 20       /* most alternatives a request may ask for (as OpenAI) */
#define TWIN_SAMPLER_GREEDY_BELOW 1e-5f    /* temperatures below this sample greedily */

/* Per-request parameters. Start from twin_sampling_params_default(): a zeroed struct is not
 * valid (top_p 0 and repetition_penalty 0 are rejected). */
typedef struct twin_sampling_params {
  float temperature;        /* >= 0; 0 (or < TWIN_SAMPLER_GREEDY_BELOW) = greedy */
  int top_k;                /* >= 0; 0 = off */
  float top_p;              /* (0, 1]; 1 = off */
  float min_p;              /* [0, 1]; 0 = off */
  float repetition_penalty; /* > 0; 1 = off; over prompt and generated tokens */
  float presence_penalty;   /* [-2, 2]; 0 = off; over generated tokens */
  float frequency_penalty;  /* [-2, 2]; 0 = off; over generated tokens */
  uint64_t seed;            /* used when has_seed */
  int has_seed;             /* 0: the sampler seeds itself from the OS (getrandom) */
  int logprobs;             /* 1: report the chosen token's log-probability */
  int top_logprobs;         /* [0, TWIN_SAMPLER_MAX_LOGPROBS] alternatives; needs logprobs */
} twin_sampling_params;

/* What one sampling step chose. */
typedef struct twin_sample_result {
  int32_t token;
  float logprob;                                 /* of token; 0 when logprobs is off */
  int n_top;                                     /* alternatives filled (= top_logprobs) */
  int32_t top_tokens[TWIN_SAMPLER_MAX_LOGPROBS]; /* [n_top] most probable first, ties by id */
  float top_logprobs[TWIN_SAMPLER_MAX_LOGPROBS]; /* [n_top] */
} twin_sample_result;

typedef struct twin_sampler twin_sampler;
typedef struct twin_sampler_scratch twin_sampler_scratch;

/* temperature 1, top_k 0, top_p 1, min_p 0, penalties off, no seed, no logprobs. */
void twin_sampling_params_default(twin_sampling_params *p);

/* 0, or TWIN_EINVAL with a message naming the field, e.g.
 * "top_p must be in (0, 1] (got 1.5)". NaN is rejected everywhere. */
int twin_sampling_params_validate(const twin_sampling_params *p, twin_err *err);

/* ---- scratch: O(vocab) working memory, one per sampling thread -------------------------- */

int twin_sampler_scratch_create(int vocab_size, twin_sampler_scratch **out, twin_err *err);
void twin_sampler_scratch_destroy(twin_sampler_scratch *scratch);

/* ---- sampler: one per sequence ------------------------------------------------------------ */

/* Validates params (copied) and seeds the generator. vocab_size is the length of every logits
 * row passed to twin_sampler_sample. */
int twin_sampler_create(const twin_sampling_params *params, int vocab_size, twin_sampler **out,
                        twin_err *err);
void twin_sampler_destroy(twin_sampler *s);

/* Records prompt tokens (for the repetition penalty). tokens is borrowed for the call. Ids
 * outside [0, vocab) are refused by index. A no-op when no penalty is active. */
int twin_sampler_add_prompt(twin_sampler *s, const int32_t *tokens, int n_tokens, twin_err *err);

/* Records a generated token chosen elsewhere (a forced token, a token sampled on the GPU).
 * twin_sampler_sample records its own choice; do not accept it again. */
int twin_sampler_accept(twin_sampler *s, int32_t token, twin_err *err);

/* Chooses the next token from logits [vocab_size] (borrowed, never modified) and records it
 * as generated. scratch must have been created for at least vocab_size entries. Fails with
 * TWIN_EINVAL naming the index when a logit is NaN or +inf, or when every logit is -inf. */
int twin_sampler_sample(twin_sampler *s, twin_sampler_scratch *scratch, const float *logits,
                        twin_sample_result *out, twin_err *err);

/* Applies this sequence's penalties (step 1) in place to logits [vocab_size], the caller's
 * buffer: for a device sampler that takes penalized logits, and for tests. */
void twin_sampler_apply_penalties(const twin_sampler *s, float *logits);

/* Bytes this sampler holds (struct + penalty table). */
size_t twin_sampler_memory_bytes(const twin_sampler *s);

#endif
