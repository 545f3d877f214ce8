/* llm-svc/engine/seq_text.h — a sequence's text stage: generated token ids in, text deltas out.
 * The incremental detokenizer never emits half a UTF-8 character; the stop-string matcher holds
 * back text that may still become a stop string and reports a stop (whose text is not emitted).
 * Owned by one sequence, used only on the engine's loop thread. */
#ifndef TWIN_ENGINE_SEQ_TEXT_H
#define TWIN_ENGINE_SEQ_TEXT_H

#include <stdint.h>

#include "common/error.h"
#include "common/util.h"
#include "llm-svc/model/tokenizer.h"

typedef struct twin_seq_text twin_seq_text;

/* tok borrowed (may be NULL: no text is produced); stops [n_stops] copied. The prompt's ids
 * [n_prompt] (borrowed for the call) let the first generated token decode as a continuation. */
int twin_seq_text_create(const twin_tokenizer *tok, const int32_t *prompt, int n_prompt,
                         const char *const *stops, int n_stops, twin_seq_text **out, twin_err *err);
void twin_seq_text_destroy(twin_seq_text *t);
/* Appends the text that token completes (possibly none) to out. Returns 1 when a stop string
 * completed (out then ends just before it, and the sequence must finish), else 0; <0 on error. */
int twin_seq_text_push(twin_seq_text *t, int32_t token, twin_buf *out, twin_err *err);
/* End of the sequence: appends whatever was held back. */
void twin_seq_text_flush(twin_seq_text *t, twin_buf *out);

#endif
