/* llm-svc/backend/batch_check.c — the validation every backend runs on a twin_batch before it
 * touches memory: counts within the backend's limits, sequences laid out as backend.h says,
 * token ids in the vocabulary, positions consecutive, block ids inside the pool. */
#include "llm-svc/engine/backend.h"

int twin_batch_check(const twin_backend *b, const twin_batch *batch, twin_err *err) {
  const twin_model_config *cfg = &b->cfg;
  if (!batch || !batch->tokens || !batch->positions || !batch->seq_start || !batch->seq_len ||
      !batch->block_tables)
    return twin_err_set(err, TWIN_EINVAL, "batch: a required array is NULL");
  if (batch->n_tokens < 1 || batch->n_tokens > b->max_tokens_per_step)
    return twin_err_set(err, TWIN_EINVAL, "batch: n_tokens %d outside [1, %d]", batch->n_tokens,
                        b->max_tokens_per_step);
  if (batch->n_seqs < 1 || batch->n_seqs > b->max_seqs || batch->n_seqs > batch->n_tokens)
    return twin_err_set(err, TWIN_EINVAL, "batch: n_seqs %d outside [1, min(%d, n_tokens %d)]",
                        batch->n_seqs, b->max_seqs, batch->n_tokens);
  if (batch->max_blocks < 1)
    return twin_err_set(err, TWIN_EINVAL, "batch: max_blocks %d < 1", batch->max_blocks);
  if (batch->seq_start[0] != 0 || batch->seq_start[batch->n_seqs] != batch->n_tokens)
    return twin_err_set(err, TWIN_EINVAL, "batch: seq_start must run from 0 to n_tokens %d",
                        batch->n_tokens);
  const long capacity = (long)batch->max_blocks * TWIN_KV_BLOCK_SIZE;
  for (int s = 0; s < batch->n_seqs; s++) {
    const int start = batch->seq_start[s], end = batch->seq_start[s + 1];
    if (end <= start || end > batch->n_tokens)
      return twin_err_set(err, TWIN_EINVAL, "batch: sequence %d has no tokens (seq_start %d..%d)",
                          s, start, end);
    const int n_new = end - start, len = batch->seq_len[s];
    if (len < n_new || len > capacity)
      return twin_err_set(err, TWIN_EINVAL,
                          "batch: sequence %d: seq_len %d must be in [%d new tokens, %ld block "
                          "table slots]", s, len, n_new, capacity);
    for (int t = start; t < end; t++) {
      if (batch->tokens[t] < 0 || batch->tokens[t] >= cfg->vocab_size)
        return twin_err_set(err, TWIN_EINVAL, "batch: token %d (sequence %d) has id %d outside "
                            "the vocabulary [0, %d)", t, s, batch->tokens[t], cfg->vocab_size);
      if (batch->positions[t] != len - n_new + (t - start))
        return twin_err_set(err, TWIN_EINVAL, "batch: token %d (sequence %d) has position %d; "
                            "the sequence's new tokens sit at %d..%d", t, s, batch->positions[t],
                            len - n_new, len - 1);
    }
    const int32_t *table = batch->block_tables + (size_t)s * batch->max_blocks;
    for (int i = 0; i <= (len - 1) / TWIN_KV_BLOCK_SIZE; i++)
      if (table[i] < 0 || table[i] >= b->num_blocks)
        return twin_err_set(err, TWIN_EINVAL, "batch: sequence %d: block_tables[%d] = %d is not "
                            "a block of the pool [0, %d)", s, i, table[i], b->num_blocks);
  }
  return 0;
}
