/* llm-svc/model/detok.h — the incremental detokenizer: fed one token id at a time (as the
 * sampler produces them), it returns the text those ids complete, so that a stream of tokens
 * becomes a stream of text deltas. The concatenated deltas (with the final flush) equal
 * twin_tokenizer_decode of all the ids whenever that decode is valid UTF-8, and every delta is
 * valid UTF-8: the bytes of a character split over several tokens (byte fallback <0xNN>,
 * byte-level pieces of an emoji) are held back until the character is complete; bytes that can
 * never form a character come out as U+FFFD. SentencePiece's rule of dropping the leading space
 * of the first token is applied as in a full decode; twin_detok_prime marks text that came
 * before (the prompt), after which no space is dropped.
 * A twin_detok borrows its tokenizer (which must outlive it) and is used by one thread. */
#ifndef TWIN_MODEL_DETOK_H
#define TWIN_MODEL_DETOK_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "llm-svc/model/tokenizer.h"

typedef struct twin_detok twin_detok;

/* flags: TWIN_DECODE_SKIP_SPECIAL (tokenizer.h) drops special tokens from the text. */
int twin_detok_create(twin_detok **out, const twin_tokenizer *tok, int flags, twin_err *err);
void twin_detok_destroy(twin_detok *d);

/* Back to the state of a new detokenizer (start of a text). */
void twin_detok_reset(twin_detok *d);

/* Feeds ids whose text the caller already has (a prompt): they produce no output, but the
 * next token is decoded as a continuation (its leading space is kept). */
int twin_detok_prime(twin_detok *d, const int32_t *ids, size_t n, twin_err *err);

/* Feeds one id. *text / *len receive the newly completed text (possibly empty), valid UTF-8;
 * the bytes are owned by d and valid until the next call on d. */
int twin_detok_push(twin_detok *d, int32_t id, const char **text, size_t *len, twin_err *err);

/* End of the stream: whatever is held back, with U+FFFD for an unfinished character. Same
 * ownership as twin_detok_push. The detokenizer is then reset. */
int twin_detok_flush(twin_detok *d, const char **text, size_t *len, twin_err *err);

#endif
