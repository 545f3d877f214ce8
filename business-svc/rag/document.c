/* business-svc/rag/document.c — document types, id rules and the owned-document helpers of
 * rag/document.h. */
#include "business-svc/rag/document.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char *const doc_type_names[TWIN_DOC_TYPE_COUNT] = {"post", "article", "code"};

const char *twin_doc_type_name(twin_doc_type type) {
  if ((int)type < 0 || (int)type >= TWIN_DOC_TYPE_COUNT) return NULL;
  return doc_type_names[type];
}

int twin_doc_type_parse(const char *s, twin_doc_type *out, twin_err *err) {
  if (s) {
    for (int t = 0; t < TWIN_DOC_TYPE_COUNT; t++) {
      if (strcmp(s, doc_type_names[t]) == 0) {
        *out = (twin_doc_type)t;
        return 0;
      }
    }
  }
  return twin_err_set(err, TWIN_EINVAL, "type \"%s\" is not one of post, article, code",
                      s ? s : "(null)");
}

int twin_id_validate(const char *id, const char *what, twin_err *err) {
  if (!id || !id[0]) return twin_err_set(err, TWIN_EINVAL, "%s is empty", what);
  size_t n = strlen(id);
  if (n > TWIN_ID_MAX)
    return twin_err_set(err, TWIN_EINVAL, "%s is %zu bytes long (at most %d)", what, n, TWIN_ID_MAX);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)id[i];
    if (c <= 0x20 || c >= 0x7f)
      return twin_err_set(err, TWIN_EINVAL,
                          "%s \"%.*s\" has a byte 0x%02x at offset %zu (printable ASCII, no spaces)",
                          what, (int)(n < 64 ? n : 64), id, c, i);
  }
  return 0;
}

int twin_doc_id_from_source(const char *source, char out[TWIN_ID_CAP], twin_err *err) {
  uint8_t digest[32];
  int rc = twin_sha256(source, strlen(source), digest, err);
  if (rc) return rc;
  twin_hex_encode(digest, 16, out);
  return 0;
}

int twin_document_init(twin_document *d, const char *id, const char *source, const char *text,
                       size_t text_len, const char *author, const char *title, const char *link,
                       twin_doc_type type, twin_err *err) {
  memset(d, 0, sizeof *d);
  if (!text) return twin_err_set(err, TWIN_EINVAL, "document has no text");
  size_t bad = twin_utf8_validate(text, text_len);
  if (bad != text_len)
    return twin_err_set(err, TWIN_EINVAL, "document text is not valid UTF-8 at byte %zu", bad);
  if (!twin_doc_type_name(type))
    return twin_err_set(err, TWIN_EINVAL, "document type %d is out of range", (int)type);
  char derived[TWIN_ID_CAP];
  if (!id || !id[0]) {
    int rc = twin_doc_id_from_source(source ? source : "inline", derived, err);
    if (rc) return rc;
    id = derived;
  } else {
    int rc = twin_id_validate(id, "document id", err);
    if (rc) return rc;
  }
  d->id = strdup(id);
  d->source = strdup(source ? source : "inline");
  d->text = malloc(text_len + 1);
  d->author = strdup(author ? author : "");
  d->title = strdup(title ? title : "");
  d->link = strdup(link ? link : "");
  if (!d->id || !d->source || !d->text || !d->author || !d->title || !d->link) {
    twin_document_free(d);
    return twin_err_set(err, TWIN_ENOMEM, "out of memory copying a document");
  }
  memcpy(d->text, text, text_len);
  d->text[text_len] = '\0';
  d->text_len = text_len;
  d->type = type;
  return 0;
}

void twin_document_free(twin_document *d) {
  if (!d) return;
  free(d->id);
  free(d->source);
  free(d->text);
  free(d->author);
  free(d->title);
  free(d->link);
  memset(d, 0, sizeof *d);
}
