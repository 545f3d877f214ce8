/* business-svc/rag/chunker.c — the chunker of rag/chunker.h in two steps: the text becomes a
 * list of units (byte spans with a token count and boundary flags), then units are packed into
 * chunks. Prose units are sentences and lines inside paragraphs (a fenced code block inside
 * prose is one paragraph whose units are its lines); code units are blocks between blank
 * lines and definitions. A unit larger than max_tokens is cut at whitespace, then, for a
 * word that is still too long, at the longest prefix that fits (binary search). */
#include "business-svc/rag/chunker.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "common/util.h"

/* ============================================================================================
 * token counting
 * ========================================================================================== */

static bool is_space_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static bool is_ideograph(int32_t cp) {
  return (cp >= 0x3040 && cp <= 0x30FF) ||   /* hiragana, katakana */
         (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) ||
         (cp >= 0xAC00 && cp <= 0xD7AF) ||   /* hangul syllables */
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x20000 && cp <= 0x2FA1F);
}

int twin_token_count_approx(const char *text, size_t len) {
  int tokens = 0, run = 0; /* run: letters/digits in the current run, in code points */
  size_t i = 0;
  while (i < len) {
    int32_t cp;
    utf8proc_ssize_t step = utf8proc_iterate((const utf8proc_uint8_t *)text + i,
                                             (utf8proc_ssize_t)(len - i), &cp);
    if (step <= 0) { cp = 0xFFFD; step = 1; }
    i += (size_t)step;
    utf8proc_category_t cat = utf8proc_category(cp);
    bool alnum = !is_ideograph(cp) &&
                 ((cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
                  (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME) ||
                  (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO));
    if (alnum) {
      if (run % 6 == 0) tokens++;
      run++;
      continue;
    }
    run = 0;
    bool space = cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' ||
                 cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_CC ||
                 cat == UTF8PROC_CATEGORY_CF;
    if (!space) tokens++; /* punctuation, symbols, ideographs */
  }
  return tokens;
}

static int wordpiece_count(void *ctx, const char *text, size_t len) {
  const twin_wordpiece *wp = ctx;
  /* every piece consumes at least one byte of input: len + 2 ids always suffice */
  size_t cap = len + 2;
  if (cap > (size_t)INT32_MAX) return TWIN_EINVAL;
  int32_t stack_ids[512];
  int32_t *ids = cap <= 512 ? stack_ids : malloc(cap * sizeof *ids);
  if (!ids) return TWIN_ENOMEM;
  int n = 0;
  int rc = twin_wordpiece_encode(wp, text, len, (int)cap, ids, &n, NULL);
  if (ids != stack_ids) free(ids);
  if (rc) return rc;
  return n >= 2 ? n - 2 : 0;
}

twin_token_counter twin_token_counter_wordpiece(const twin_wordpiece *wp) {
  twin_token_counter c = {.count = wordpiece_count, .ctx = (void *)wp};
  return c;
}

static int count_tokens(const twin_token_counter *c, const char *text, size_t len) {
  if (len == 0) return 0;
  if (!c->count) return twin_token_count_approx(text, len);
  return c->count(c->ctx, text, len);
}

twin_chunker_options twin_chunker_default_options(void) {
  twin_chunker_options o;
  memset(&o, 0, sizeof o);
  o.by_type[TWIN_DOC_POST] = (twin_chunk_size){128, 16};
  o.by_type[TWIN_DOC_ARTICLE] = (twin_chunk_size){256, 32};
  o.by_type[TWIN_DOC_CODE] = (twin_chunk_size){256, 0};
  return o;
}

/* ============================================================================================
 * units
 * ========================================================================================== */

enum {
  UNIT_PARA_START = 1,    /* first unit of a paragraph (prose) or after a blank line (code) */
  UNIT_HEADING = 2,       /* a markdown heading line */
  UNIT_SECTION_START = 4, /* code: a definition (with its leading comments) starts here */
};

typedef struct unit {
  size_t start, end; /* byte span, no leading/trailing whitespace */
  int tokens;
  int flags;
} unit;

typedef struct unit_list {
  unit *items; /* [n] */
  size_t n, cap;
  const char *text;
  const twin_token_counter *counter;
  int max_tokens;
} unit_list;

static int push_unit(unit_list *ul, size_t start, size_t end, int tokens, int flags) {
  if (ul->n == ul->cap) {
    size_t cap = ul->cap ? ul->cap * 2 : 64;
    unit *items = realloc(ul->items, cap * sizeof *items);
    if (!items) return TWIN_ENOMEM;
    ul->items = items;
    ul->cap = cap;
  }
  ul->items[ul->n++] = (unit){start, end, tokens, flags};
  return 0;
}

/* Trims whitespace off [*s, *e). */
static void trim_span(const char *t, size_t *s, size_t *e) {
  while (*s < *e && is_space_byte(t[*s])) (*s)++;
  while (*e > *s && is_space_byte(t[*e - 1])) (*e)--;
}

/* Cuts a single word [s, e) that alone exceeds max_tokens into pieces that fit: each piece
 * is the longest prefix (at a code point boundary) whose count fits, found by binary search. */
static int add_hard_cut(unit_list *ul, size_t s, size_t e, int flags) {
  const char *t = ul->text;
  while (s < e) {
    size_t lo = s, hi = e; /* invariant: [s, lo) fits (or lo == s), [s, hi] may not */
    int lo_tokens = 0;
    while (lo < hi) {
      size_t mid = lo + (hi - lo + 1) / 2;
      while (mid < e && (t[mid] & 0xC0) == 0x80) mid++; /* to a code point boundary */
      if (mid <= lo) break;
      int c = count_tokens(ul->counter, t + s, mid - s);
      if (c < 0) return c;
      if (c <= ul->max_tokens) {
        lo = mid;
        lo_tokens = c;
      } else {
        hi = mid - 1;
      }
    }
    if (lo == s) { /* not even one code point fits: take one anyway */
      lo = s + 1;
      while (lo < e && (t[lo] & 0xC0) == 0x80) lo++;
      lo_tokens = count_tokens(ul->counter, t + s, lo - s);
      if (lo_tokens < 0) return lo_tokens;
    }
    int rc = push_unit(ul, s, lo, lo_tokens, flags);
    if (rc) return rc;
    flags &= ~(UNIT_PARA_START | UNIT_SECTION_START | UNIT_HEADING);
    s = lo;
  }
  return 0;
}

/* Adds span [s, e) as one unit, or, when it has more than max_tokens, as pieces cut at
 * whitespace (greedy, word counts being additive), words too long on their own cut hard. */
static int add_span(unit_list *ul, size_t s, size_t e, int flags) {
  const char *t = ul->text;
  trim_span(t, &s, &e);
  if (s >= e) return 0;
  int tokens = count_tokens(ul->counter, t + s, e - s);
  if (tokens < 0) return tokens;
  if (tokens <= ul->max_tokens) return push_unit(ul, s, e, tokens, flags);
  size_t piece_start = s, piece_end = s;
  int piece_tokens = 0;
  size_t w = s;
  while (w < e) {
    size_t ws = w;
    while (w < e && !is_space_byte(t[w])) w++;
    size_t we = w;
    while (w < e && is_space_byte(t[w])) w++;
    int c = count_tokens(ul->counter, t + ws, we - ws);
    if (c < 0) return c;
    if (c > ul->max_tokens) {
      int rc = 0;
      if (piece_end > piece_start) rc = push_unit(ul, piece_start, piece_end, piece_tokens, flags);
      if (piece_end > piece_start) flags &= ~(UNIT_PARA_START | UNIT_SECTION_START | UNIT_HEADING);
      if (!rc) rc = add_hard_cut(ul, ws, we, flags);
      if (rc) return rc;
      flags &= ~(UNIT_PARA_START | UNIT_SECTION_START | UNIT_HEADING);
      piece_start = piece_end = w;
      piece_tokens = 0;
      continue;
    }
    if (piece_end > piece_start && piece_tokens + c > ul->max_tokens) {
      int rc = push_unit(ul, piece_start, piece_end, piece_tokens, flags);
      if (rc) return rc;
      flags &= ~(UNIT_PARA_START | UNIT_SECTION_START | UNIT_HEADING);
      piece_start = ws;
      piece_tokens = 0;
    }
    if (piece_end == piece_start) piece_start = ws;
    piece_end = we;
    piece_tokens += c;
  }
  if (piece_end > piece_start) return push_unit(ul, piece_start, piece_end, piece_tokens, flags);
  return 0;
}

/* ---- prose --------------------------------------------------------------------------------- */

static bool line_is_blank(const char *t, size_t s, size_t e) {
  for (size_t i = s; i < e; i++)
    if (!is_space_byte(t[i])) return false;
  return true;
}

static bool line_is_fence(const char *t, size_t s, size_t e, char *ch) {
  size_t i = s;
  while (i < e && i - s < 3 && t[i] == ' ') i++;
  if (i + 3 > e) return false;
  if ((t[i] == '`' || t[i] == '~') && t[i + 1] == t[i] && t[i + 2] == t[i]) {
    *ch = t[i];
    return true;
  }
  return false;
}

static size_t line_end(const char *t, size_t len, size_t s) {
  const char *nl = memchr(t + s, '\n', len - s);
  return nl ? (size_t)(nl - t) : len;
}

/* Sentences of one line [s, e): ends after . ! ? (and closing quotes/brackets) followed by
 * whitespace, and after CJK full stops. */
static int add_sentences(unit_list *ul, size_t s, size_t e, int flags) {
  const char *t = ul->text;
  size_t sent = s, i = s;
  while (i < e) {
    unsigned char c = (unsigned char)t[i];
    size_t after = 0; /* end of the sentence when one ends here */
    if (c == '.' || c == '!' || c == '?') {
      size_t j = i + 1;
      while (j < e && (t[j] == '.' || t[j] == '!' || t[j] == '?' || t[j] == '"' || t[j] == '\'' ||
                       t[j] == ')' || t[j] == ']'))
        j++;
      if (j >= e || is_space_byte(t[j])) after = j;
      i = j;
    } else if (c == 0xE3 && i + 2 < e && (unsigned char)t[i + 1] == 0x80 &&
               (unsigned char)t[i + 2] == 0x82) { /* U+3002 ideographic full stop */
      after = i + 3;
      i += 3;
    } else if (c == 0xEF && i + 2 < e && (unsigned char)t[i + 1] == 0xBC &&
               ((unsigned char)t[i + 2] == 0x81 || (unsigned char)t[i + 2] == 0x9F)) {
      after = i + 3; /* fullwidth ! and ? */
      i += 3;
    } else {
      i++;
    }
    if (after) {
      int rc = add_span(ul, sent, after, flags);
      if (rc) return rc;
      if (ul->n && ul->items[ul->n - 1].start >= sent) flags &= ~UNIT_PARA_START;
      sent = after;
    }
  }
  size_t ss = sent, ee = e;
  trim_span(t, &ss, &ee);
  if (ss < ee) return add_span(ul, ss, ee, flags);
  return 0;
}

static int build_prose_units(unit_list *ul, size_t len) {
  const char *t = ul->text;
  size_t pos = 0;
  bool para_start = true;
  while (pos < len) {
    size_t e = line_end(t, len, pos), next = e < len ? e + 1 : len;
    if (line_is_blank(t, pos, e)) {
      para_start = true;
      pos = next;
      continue;
    }
    char fch;
    if (line_is_fence(t, pos, e, &fch)) {
      /* a fenced block is one paragraph; its units are lines, fences included */
      int flags = UNIT_PARA_START;
      size_t q = pos;
      bool first = true;
      while (q < len) {
        size_t qe = line_end(t, len, q), qn = qe < len ? qe + 1 : len;
        char c2;
        bool closing = !first && line_is_fence(t, q, qe, &c2) && c2 == fch;
        int rc = add_span(ul, q, qe, flags);
        if (rc) return rc;
        if (ul->n && ul->items[ul->n - 1].start >= q) flags = 0;
        first = false;
        q = qn;
        if (closing) break;
      }
      pos = q;
      para_start = true;
      continue;
    }
    int flags = para_start ? UNIT_PARA_START : 0;
    size_t hs = pos, hashes = 0;
    while (hs < e && hs - pos < 3 && t[hs] == ' ') hs++;
    while (hs + hashes < e && t[hs + hashes] == '#') hashes++;
    bool heading = hashes >= 1 && hashes <= 6 && hs + hashes < e && t[hs + hashes] == ' ';
    if (heading) {
      flags |= UNIT_HEADING | UNIT_PARA_START; /* a heading always opens a paragraph */
      int rc = add_span(ul, pos, e, flags);
      if (rc) return rc;
      para_start = true; /* the text under a heading is a new paragraph */
    } else {
      size_t n_before = ul->n;
      int rc = add_sentences(ul, pos, e, flags);
      if (rc) return rc;
      if (ul->n > n_before) para_start = false;
    }
    pos = next;
  }
  return 0;
}

/* ---- code ---------------------------------------------------------------------------------- */

static const char *const definition_prefixes[] = {
    "def ", "async def ", "class ", "fn ", "pub fn ", "pub(crate) fn ", "async fn ",
    "pub async fn ", "func ", "function ", "async function ", "export function ",
    "export async function ", "export default function ", "export class ",
    "export default class ", "struct ", "pub struct ", "enum ", "pub enum ", "union ",
    "trait ", "pub trait ", "impl ", "impl<", "interface ", "export interface ", "type ",
    "typedef ", "template ", "module ", "package ", "public ", "private ", "protected ",
    "static ", "inline ", "extern ", "object ", "namespace ", "sub ", "proc ", "macro_rules! ",
};

static bool starts_with_word(const char *line, size_t len, const char *w) {
  size_t n = strlen(w);
  return len >= n && memcmp(line, w, n) == 0;
}

int twin_chunk_is_definition(const char *line, size_t len) {
  if (len == 0 || is_space_byte(line[0])) return 0; /* column 0 only */
  for (size_t i = 0; i < sizeof definition_prefixes / sizeof *definition_prefixes; i++)
    if (starts_with_word(line, len, definition_prefixes[i])) return 1;
  /* A C-family function definition: "type name(args)" at column 0 that is not a statement
   * or declaration (no ';'), nor a control keyword or preprocessor line. */
  unsigned char c0 = (unsigned char)line[0];
  if (!(c0 == '_' || (c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z'))) return 0;
  static const char *const not_definitions[] = {"if ", "if(", "for ", "for(", "while ", "while(",
                                                "switch ", "return", "else", "do ", "case ",
                                                "goto ", "sizeof"};
  for (size_t i = 0; i < sizeof not_definitions / sizeof *not_definitions; i++)
    if (starts_with_word(line, len, not_definitions[i])) return 0;
  const char *paren = memchr(line, '(', len);
  if (!paren || memchr(line, ';', len) || memchr(line, '=', (size_t)(paren - line))) return 0;
  /* at least "a b(" or "a(": an identifier right before '(' preceded by a type */
  const char *space = memchr(line, ' ', (size_t)(paren - line));
  const char *star = memchr(line, '*', (size_t)(paren - line));
  return space || star ? 1 : 0;
}

static bool line_is_comment_or_decorator(const char *t, size_t s, size_t e) {
  while (s < e && (t[s] == ' ' || t[s] == '\t')) s++;
  if (s >= e) return false;
  return t[s] == '#' || t[s] == '@' || (e - s >= 2 && t[s] == '/' && (t[s + 1] == '/' || t[s + 1] == '*')) ||
         t[s] == '*' || (e - s >= 2 && t[s] == '-' && t[s + 1] == '-');
}

typedef struct code_line {
  size_t start, end; /* end excludes '\n' */
  bool blank, definition;
} code_line;

static int build_code_units(unit_list *ul, size_t len) {
  const char *t = ul->text;
  size_t n_lines = 0, cap = 0;
  code_line *lines = NULL;
  for (size_t pos = 0; pos < len;) {
    size_t e = line_end(t, len, pos);
    if (n_lines == cap) {
      cap = cap ? cap * 2 : 256;
      code_line *nl = realloc(lines, cap * sizeof *nl);
      if (!nl) { free(lines); return TWIN_ENOMEM; }
      lines = nl;
    }
    lines[n_lines++] = (code_line){pos, e, line_is_blank(t, pos, e),
                                   twin_chunk_is_definition(t + pos, e - pos) != 0};
    pos = e < len ? e + 1 : len;
  }
  /* section starts: a definition, moved up over the comments/decorators right above it */
  bool *section = calloc(n_lines ? n_lines : 1, sizeof *section);
  if (!section) { free(lines); return TWIN_ENOMEM; }
  for (size_t i = 0; i < n_lines; i++) {
    if (!lines[i].definition) continue;
    size_t k = i;
    while (k > 0 && !lines[k - 1].blank && !lines[k - 1].definition &&
           line_is_comment_or_decorator(t, lines[k - 1].start, lines[k - 1].end))
      k--;
    section[k] = true;
  }
  /* blocks: runs of non-blank lines, cut before each section start */
  int rc = 0;
  bool after_blank = true;
  size_t i = 0;
  while (i < n_lines && !rc) {
    if (lines[i].blank) { after_blank = true; i++; continue; }
    size_t b = i;
    i++;
    while (i < n_lines && !lines[i].blank && !section[i]) i++;
    int flags = (after_blank ? UNIT_PARA_START : 0) | (section[b] ? UNIT_SECTION_START : 0);
    size_t s = lines[b].start, e = lines[i - 1].end;
    int tokens = count_tokens(ul->counter, t + s, e - s);
    if (tokens < 0) { rc = tokens; break; }
    if (tokens <= ul->max_tokens) {
      rc = push_unit(ul, s, e, tokens, flags);
    } else { /* too big: its lines are the units */
      for (size_t k = b; k < i && !rc; k++) {
        size_t n_before = ul->n;
        rc = add_span(ul, lines[k].start, lines[k].end, flags);
        if (ul->n > n_before) flags = 0;
      }
    }
    after_blank = false;
  }
  free(section);
  free(lines);
  return rc;
}

/* ============================================================================================
 * packing
 * ========================================================================================== */

static int push_chunk(twin_chunk_list *out, size_t *cap, const unit *u, size_t first, size_t end) {
  if (out->n == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    twin_chunk *items = realloc(out->items, nc * sizeof *items);
    if (!items) return TWIN_ENOMEM;
    out->items = items;
    *cap = nc;
  }
  int tokens = 0;
  for (size_t k = first; k < end; k++) tokens += u[k].tokens;
  out->items[out->n] = (twin_chunk){.offset = u[first].start, .len = u[end - 1].end - u[first].start,
                                    .n_tokens = tokens, .position = (int)out->n};
  out->n++;
  return 0;
}

static int pack_units(const unit_list *ul, bool code, const twin_chunk_size *size,
                      twin_chunk_list *out) {
  const unit *u = ul->items;
  size_t nu = ul->n, cap = 0;
  int max = size->max_tokens, overlap = size->overlap_tokens;
  size_t start = 0, fresh = 0; /* units >= fresh have not been in a chunk yet */
  while (fresh < nu) {
    int tokens = 0;
    for (size_t k = start; k < fresh; k++) tokens += u[k].tokens;
    if (tokens + u[fresh].tokens > max) { /* the overlap leaves no room: drop it */
      start = fresh;
      tokens = 0;
    }
    size_t j = start;
    while (j < nu) {
      int t = u[j].tokens;
      if (j > fresh) { /* the first fresh unit always goes in: progress */
        if (tokens + t > max) break;
        if (code && (u[j].flags & UNIT_SECTION_START) && tokens * 4 >= max) break;
        if ((u[j].flags & UNIT_PARA_START) && tokens * 2 >= max) {
          int para = 0;
          for (size_t k = j; k < nu && (k == j || !(u[k].flags & UNIT_PARA_START)); k++) para += u[k].tokens;
          if (tokens + para > max) break;
        }
      }
      tokens += t;
      j++;
    }
    /* never end on a heading that has its text in the next chunk */
    while (j < nu && j - 1 > fresh && (u[j - 1].flags & UNIT_HEADING)) j--;
    int rc = push_chunk(out, &cap, u, start, j);
    if (rc) return rc;
    if (j >= nu) break;
    /* the next chunk opens with the tail of this one that fits in the overlap */
    size_t k = j;
    int ov = 0;
    while (overlap > 0 && k - 1 > start && ov + u[k - 1].tokens <= overlap) {
      k--;
      ov += u[k].tokens;
    }
    start = k;
    fresh = j;
  }
  return 0;
}

/* ============================================================================================
 * entry points
 * ========================================================================================== */

int twin_chunk_text(const char *text, size_t len, twin_doc_type type,
                    const twin_chunker_options *opts, twin_chunk_list *out, twin_err *err) {
  memset(out, 0, sizeof *out);
  if (!twin_doc_type_name(type))
    return twin_err_set(err, TWIN_EINVAL, "chunker: document type %d is out of range", (int)type);
  twin_chunker_options defaults = twin_chunker_default_options();
  if (!opts) opts = &defaults;
  const twin_chunk_size *size = &opts->by_type[type];
  if (size->max_tokens <= 0 || size->overlap_tokens < 0 || size->overlap_tokens * 2 >= size->max_tokens)
    return twin_err_set(err, TWIN_EINVAL,
                        "chunker: %s sizes max_tokens=%d overlap_tokens=%d (need max > 0 and "
                        "0 <= overlap < max/2)",
                        twin_doc_type_name(type), size->max_tokens, size->overlap_tokens);
  if (!text && len) return twin_err_set(err, TWIN_EINVAL, "chunker: text is NULL");
  size_t bad = twin_utf8_validate(text ? text : "", len);
  if (bad != len)
    return twin_err_set(err, TWIN_EINVAL, "chunker: text is not valid UTF-8 at byte %zu", bad);
  unit_list ul = {.text = text, .counter = &opts->counter, .max_tokens = size->max_tokens};
  int rc = type == TWIN_DOC_CODE ? build_code_units(&ul, len) : build_prose_units(&ul, len);
  if (!rc && ul.n) rc = pack_units(&ul, type == TWIN_DOC_CODE, size, out);
  free(ul.items);
  if (rc) {
    twin_chunk_list_free(out);
    if (rc == TWIN_ENOMEM) return twin_err_set(err, rc, "chunker: out of memory");
    return twin_err_set(err, rc, "chunker: counting tokens failed (%s)", twin_err_name(rc));
  }
  return 0;
}

void twin_chunk_list_free(twin_chunk_list *list) {
  if (!list) return;
  free(list->items);
  list->items = NULL;
  list->n = 0;
}
