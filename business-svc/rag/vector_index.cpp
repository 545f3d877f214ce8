/* business-svc/rag/vector_index.cpp — the C++ shim behind rag/vector_index.h. One Store holds
 * the FAISS index and, per stored vector (its position in FAISS, "slot"), the chunk id, author
 * and type and whether it is live. FAISS sees serial numbers as its external ids
 * (IndexIDMap2); filtered searches go to the inner index with an IDSelector over slots, which
 * is how faiss 1.7.3 applies a selector (its IndexIDMap refuses search parameters). Every
 * FAISS call is wrapped: a C++ exception becomes TWIN_EINTERNAL with FAISS's message. */
/* common/ and rag/document.h are C headers without extern "C" guards of their own */
extern "C" {
#include "business-svc/rag/document.h"
#include "common/error.h"
#include "common/util.h"
}
#include "business-svc/rag/vector_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/IDSelector.h>
#include <omp.h>
#include <pthread.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace {

using idx_t = faiss::Index::idx_t;

/* ============================================================================================
 * the store: one FAISS index and its slots (only the writer mutates it)
 * ========================================================================================== */

struct Slot {
  std::string chunk_id;
  uint32_t author; /* into Store::author_names */
  uint8_t type;
  bool alive;
};

struct Store {
  bool hnsw = false;
  std::unique_ptr<faiss::IndexIDMap2> index; /* owns its inner index */
  std::vector<Slot> slots;                   /* [stored] by FAISS position */
  std::unordered_map<std::string, idx_t> pos_of; /* live chunk id -> position */
  std::unordered_map<std::string, uint32_t> author_ids;
  std::vector<std::string> author_names;
  std::vector<size_t> live_by_author; /* [authors] live vectors per author */
  size_t live_by_type[TWIN_DOC_TYPE_COUNT] = {0, 0, 0};
  size_t tombstones = 0;
  idx_t next_serial = 0;
};

struct Options {
  int dim;
  twin_index_kind kind;
  size_t hnsw_threshold;
  int hnsw_m, hnsw_ef_construction, hnsw_ef_search;
  double max_tombstone_ratio;
  int search_threads;
};

std::unique_ptr<faiss::IndexIDMap2> make_faiss_index(const Options &o, bool hnsw) {
  faiss::Index *inner;
  if (hnsw) {
    auto *h = new faiss::IndexHNSWFlat(o.dim, o.hnsw_m, faiss::METRIC_INNER_PRODUCT);
    h->hnsw.efConstruction = o.hnsw_ef_construction;
    h->hnsw.efSearch = o.hnsw_ef_search;
    inner = h;
  } else {
    inner = new faiss::IndexFlatIP(o.dim);
  }
  auto map = std::make_unique<faiss::IndexIDMap2>(inner);
  map->own_fields = true;
  return map;
}

/* The stored vectors, [stored][dim], in FAISS position order. */
const float *stored_vectors(const Store &s) {
  faiss::Index *inner = s.index->index;
  if (s.hnsw) inner = static_cast<faiss::IndexHNSW *>(inner)->storage;
  return static_cast<faiss::IndexFlat *>(inner)->get_xb();
}

uint32_t intern_author(Store &s, const std::string &name) {
  auto it = s.author_ids.find(name);
  if (it != s.author_ids.end()) return it->second;
  uint32_t id = (uint32_t)s.author_names.size();
  s.author_names.push_back(name);
  s.author_ids.emplace(name, id);
  s.live_by_author.push_back(0);
  return id;
}

/* Appends n normalized vectors [n][dim] with their slots. */
void store_append(Store &s, const float *vectors, size_t n, std::vector<Slot> &&new_slots) {
  std::vector<idx_t> serials(n);
  for (size_t i = 0; i < n; i++) serials[i] = s.next_serial++;
  s.index->add_with_ids((idx_t)n, vectors, serials.data());
  for (size_t i = 0; i < n; i++) {
    Slot &slot = new_slots[i];
    idx_t pos = (idx_t)s.slots.size();
    s.pos_of[slot.chunk_id] = pos;
    s.live_by_author[slot.author]++;
    s.live_by_type[slot.type]++;
    s.slots.push_back(std::move(slot));
  }
}

/* A copy of s's live vectors in a new FAISS index of the given kind (s is not changed). */
std::unique_ptr<Store> store_rebuild(const Store &s, const Options &o, bool hnsw) {
  auto out = std::make_unique<Store>();
  out->hnsw = hnsw;
  out->index = make_faiss_index(o, hnsw);
  out->author_ids = s.author_ids;
  out->author_names = s.author_names;
  out->live_by_author.assign(s.author_names.size(), 0);
  const float *xb = stored_vectors(s);
  size_t live = s.slots.size() - s.tombstones;
  std::vector<float> vectors(live * (size_t)o.dim);
  std::vector<Slot> slots;
  slots.reserve(live);
  for (size_t p = 0; p < s.slots.size(); p++) {
    if (!s.slots[p].alive) continue;
    std::memcpy(&vectors[slots.size() * (size_t)o.dim], xb + p * (size_t)o.dim,
                (size_t)o.dim * sizeof(float));
    slots.push_back(s.slots[p]);
  }
  store_append(*out, vectors.data(), live, std::move(slots));
  return out;
}

/* ============================================================================================
 * the filter as a FAISS selector over positions
 * ========================================================================================== */

struct SlotSelector : faiss::IDSelector {
  const std::vector<Slot> *slots = nullptr;
  std::vector<uint32_t> authors; /* empty = any */
  unsigned type_mask = 0;        /* 0 = any */
  bool is_member(idx_t pos) const override {
    const Slot &s = (*slots)[(size_t)pos];
    if (!s.alive) return false;
    if (type_mask && !(type_mask & (1u << s.type))) return false;
    if (!authors.empty() && std::find(authors.begin(), authors.end(), s.author) == authors.end())
      return false;
    return true;
  }
};

void normalize_into(const float *in, float *out, int dim) {
  double sum = 0;
  for (int d = 0; d < dim; d++) sum += (double)in[d] * in[d];
  float inv = sum > 0 ? (float)(1.0 / std::sqrt(sum)) : 0.0f;
  for (int d = 0; d < dim; d++) out[d] = sum > 0 ? in[d] * inv : 0.0f;
}

/* The type as the int a C caller stored: reading an out-of-range enum value directly is
 * undefined in C++ (it is not in C, where the caller may well have put one). */
int entry_type(const twin_index_entry &e) {
  static_assert(sizeof(twin_doc_type) == sizeof(int), "twin_doc_type is an int");
  int t;
  std::memcpy(&t, &e.type, sizeof t);
  return t;
}

bool all_finite(const float *v, int dim) {
  for (int d = 0; d < dim; d++)
    if (!std::isfinite(v[d])) return false;
  return true;
}

}  // namespace

/* ============================================================================================
 * the C object
 * ========================================================================================== */

struct twin_vector_index {
  Options opts;
  pthread_rwlock_t lock;   /* readers: searches and queries; writer: swapping/mutating store */
  pthread_mutex_t writer;  /* serializes writers, held across builds done aside */
  std::unique_ptr<Store> store;
  size_t rebuilds = 0;
};

namespace {

struct ReadLock {
  pthread_rwlock_t *l;
  explicit ReadLock(pthread_rwlock_t *l_) : l(l_) { pthread_rwlock_rdlock(l); }
  ~ReadLock() { pthread_rwlock_unlock(l); }
};
struct WriteLock {
  pthread_rwlock_t *l;
  explicit WriteLock(pthread_rwlock_t *l_) : l(l_) { pthread_rwlock_wrlock(l); }
  ~WriteLock() { pthread_rwlock_unlock(l); }
};
/* FAISS parallelizes inside one search with OpenMP; for the single queries of concurrent
 * requests a team's start and barrier cost more than they save, and spinning threads steal the
 * cores of other requests. The calling thread's OpenMP thread count is set for the search and
 * put back after (it is per-thread state; other threads are not affected). */
struct OmpThreads {
  int saved;
  explicit OmpThreads(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(saved); }
};
struct MutexLock {
  pthread_mutex_t *m;
  explicit MutexLock(pthread_mutex_t *m_) : m(m_) { pthread_mutex_lock(m); }
  ~MutexLock() { pthread_mutex_unlock(m); }
};

std::unique_ptr<Store> new_store(const Options &o) {
  auto s = std::make_unique<Store>();
  s->hnsw = o.kind == TWIN_INDEX_HNSW;
  s->index = make_faiss_index(o, s->hnsw);
  return s;
}

/* Called by the writer (mutex held, no rwlock): swaps in an HNSW build when an AUTO index
 * reached its threshold, or a rebuild when tombstones pass the ratio. */
void maybe_rebuild(twin_vector_index *ix) {
  Store &s = *ix->store;
  size_t stored = s.slots.size(), live = stored - s.tombstones;
  bool to_hnsw = ix->opts.kind == TWIN_INDEX_AUTO && !s.hnsw && live >= ix->opts.hnsw_threshold;
  bool compact = s.hnsw && stored > 0 && (double)s.tombstones > ix->opts.max_tombstone_ratio * (double)stored;
  if (!to_hnsw && !compact) return;
  std::unique_ptr<Store> built = store_rebuild(s, ix->opts, true); /* readers go on meanwhile */
  WriteLock w(&ix->lock);
  ix->store = std::move(built);
  ix->rebuilds++;
}

}  // namespace

extern "C" {

const char *twin_index_kind_name(twin_index_kind kind) {
  switch (kind) {
    case TWIN_INDEX_EXACT: return "exact";
    case TWIN_INDEX_HNSW: return "hnsw";
    case TWIN_INDEX_AUTO: return "auto";
  }
  return "?";
}

int twin_index_kind_parse(const char *s, twin_index_kind *out, twin_err *err) {
  static const twin_index_kind kinds[] = {TWIN_INDEX_EXACT, TWIN_INDEX_HNSW, TWIN_INDEX_AUTO};
  for (twin_index_kind k : kinds) {
    if (s && std::strcmp(s, twin_index_kind_name(k)) == 0) {
      *out = k;
      return 0;
    }
  }
  return twin_err_set(err, TWIN_EINVAL, "index kind \"%s\" is not one of exact, hnsw, auto",
                      s ? s : "(null)");
}

int twin_vector_index_create(twin_vector_index **out, const twin_vector_index_options *opts,
                             twin_err *err) {
  *out = nullptr;
  if (!opts || opts->dim <= 0 || opts->dim > 65536)
    return twin_err_set(err, TWIN_EINVAL, "vector index: dim %d is out of range [1, 65536]",
                        opts ? opts->dim : 0);
  if (opts->kind != TWIN_INDEX_EXACT && opts->kind != TWIN_INDEX_HNSW && opts->kind != TWIN_INDEX_AUTO)
    return twin_err_set(err, TWIN_EINVAL, "vector index: kind %d is unknown", (int)opts->kind);
  if (opts->hnsw_m < 0 || opts->hnsw_ef_construction < 0 || opts->hnsw_ef_search < 0 ||
      opts->search_threads < 0 ||
      opts->max_tombstone_ratio < 0 || opts->max_tombstone_ratio >= 1)
    return twin_err_set(err, TWIN_EINVAL,
                        "vector index: HNSW settings must be >= 0 (m=%d ef_construction=%d "
                        "ef_search=%d) and max_tombstone_ratio in [0, 1) (%g)",
                        opts->hnsw_m, opts->hnsw_ef_construction, opts->hnsw_ef_search,
                        opts->max_tombstone_ratio);
  Options o;
  o.dim = opts->dim;
  o.kind = opts->kind;
  o.hnsw_threshold = opts->hnsw_threshold ? opts->hnsw_threshold : 50000;
  o.hnsw_m = opts->hnsw_m ? opts->hnsw_m : 32;
  o.hnsw_ef_construction = opts->hnsw_ef_construction ? opts->hnsw_ef_construction : 80;
  o.hnsw_ef_search = opts->hnsw_ef_search ? opts->hnsw_ef_search : 64;
  o.max_tombstone_ratio = opts->max_tombstone_ratio > 0 ? opts->max_tombstone_ratio : 0.25;
  o.search_threads = opts->search_threads > 0 ? opts->search_threads : 1;
  twin_vector_index *ix = new (std::nothrow) twin_vector_index;
  if (!ix) return twin_err_set(err, TWIN_ENOMEM, "vector index: out of memory");
  ix->opts = o;
  try {
    ix->store = new_store(o);
  } catch (const std::exception &e) {
    delete ix;
    return twin_err_set(err, TWIN_EINTERNAL, "vector index: creating the FAISS index: %s", e.what());
  }
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* writers must not starve behind a steady stream of searches */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&ix->lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  pthread_mutex_init(&ix->writer, nullptr);
  *out = ix;
  return 0;
}

int twin_vector_index_create_like(twin_vector_index **out, twin_vector_index *like, twin_err *err) {
  twin_vector_index_options o;
  {
    MutexLock writer(&like->writer); /* options change only in a swap, which holds it */
    o.dim = like->opts.dim;
    o.kind = like->opts.kind;
    o.hnsw_threshold = like->opts.hnsw_threshold;
    o.hnsw_m = like->opts.hnsw_m;
    o.hnsw_ef_construction = like->opts.hnsw_ef_construction;
    o.hnsw_ef_search = like->opts.hnsw_ef_search;
    o.max_tombstone_ratio = like->opts.max_tombstone_ratio;
    o.search_threads = like->opts.search_threads;
  }
  return twin_vector_index_create(out, &o, err);
}

void twin_vector_index_destroy(twin_vector_index *ix) {
  if (!ix) return;
  pthread_rwlock_destroy(&ix->lock);
  pthread_mutex_destroy(&ix->writer);
  delete ix;
}

int twin_vector_index_dim(const twin_vector_index *ix) { return ix->opts.dim; }

/* ---- writes -------------------------------------------------------------------------------- */

int twin_vector_index_add(twin_vector_index *ix, const twin_index_entry *entries,
                          const float *vectors, size_t n, size_t *n_added, twin_err *err) {
  if (n_added) *n_added = 0;
  if (n == 0) return 0;
  if (!entries || !vectors) return twin_err_set(err, TWIN_EINVAL, "vector index add: NULL input");
  const int dim = ix->opts.dim;
  for (size_t i = 0; i < n; i++) {
    char what[48];
    snprintf(what, sizeof what, "vector index add: entry %zu chunk id", i);
    int rc = twin_id_validate(entries[i].chunk_id, what, err);
    if (rc) return rc;
    int type = entry_type(entries[i]);
    if (type < 0 || type >= TWIN_DOC_TYPE_COUNT)
      return twin_err_set(err, TWIN_EINVAL, "vector index add: entry %zu (%s) has type %d",
                          i, entries[i].chunk_id, type);
    if (!all_finite(vectors + i * (size_t)dim, dim))
      return twin_err_set(err, TWIN_EINVAL, "vector index add: vector %zu (%s) is not finite",
                          i, entries[i].chunk_id);
  }
  MutexLock writer(&ix->writer);
  try {
    std::vector<float> normalized;
    std::vector<Slot> slots;
    std::vector<size_t> source; /* [added] entry index of each slot */
    std::unordered_set<std::string> batch_ids;
    {
      /* only this writer changes the store: reading it without the rwlock is safe */
      Store &s = *ix->store;
      for (size_t i = 0; i < n; i++) {
        std::string id(entries[i].chunk_id);
        if (s.pos_of.count(id) || !batch_ids.insert(id).second) continue;
        size_t at = normalized.size();
        normalized.resize(at + (size_t)dim);
        normalize_into(vectors + i * (size_t)dim, &normalized[at], dim);
        slots.push_back(Slot{std::move(id), 0, (uint8_t)entry_type(entries[i]), true});
        source.push_back(i);
      }
    }
    size_t added = slots.size();
    if (added) {
      WriteLock w(&ix->lock);
      Store &s = *ix->store;
      for (size_t k = 0; k < added; k++) {
        const char *author = entries[source[k]].author;
        slots[k].author = intern_author(s, author ? author : "");
      }
      store_append(s, normalized.data(), added, std::move(slots));
    }
    maybe_rebuild(ix);
    if (n_added) *n_added = added;
  } catch (const std::exception &e) {
    return twin_err_set(err, TWIN_EINTERNAL, "vector index add: %s", e.what());
  }
  return 0;
}

int twin_vector_index_remove(twin_vector_index *ix, const char *const *chunk_ids, size_t n,
                             size_t *n_removed, twin_err *err) {
  if (n_removed) *n_removed = 0;
  if (n == 0) return 0;
  if (!chunk_ids) return twin_err_set(err, TWIN_EINVAL, "vector index remove: NULL ids");
  MutexLock writer(&ix->writer);
  try {
    size_t removed = 0;
    {
      WriteLock w(&ix->lock);
      Store &s = *ix->store;
      std::vector<idx_t> positions;
      for (size_t i = 0; i < n; i++) {
        if (!chunk_ids[i]) continue;
        auto it = s.pos_of.find(chunk_ids[i]);
        if (it == s.pos_of.end()) continue;
        Slot &slot = s.slots[(size_t)it->second];
        slot.alive = false;
        s.live_by_author[slot.author]--;
        s.live_by_type[slot.type]--;
        positions.push_back(it->second);
        s.pos_of.erase(it);
      }
      removed = positions.size();
      if (removed && !s.hnsw) {
        /* exact: delete in place; FAISS compacts keeping order, the slots follow suit */
        std::vector<idx_t> serials;
        serials.reserve(removed);
        for (idx_t p : positions) serials.push_back(s.index->id_map[(size_t)p]);
        faiss::IDSelectorBatch sel(serials.size(), serials.data());
        s.index->remove_ids(sel);
        size_t j = 0;
        for (size_t p = 0; p < s.slots.size(); p++) {
          if (!s.slots[p].alive) continue;
          if (j != p) s.slots[j] = std::move(s.slots[p]);
          s.pos_of[s.slots[j].chunk_id] = (idx_t)j;
          j++;
        }
        s.slots.resize(j);
      } else {
        s.tombstones += removed;
      }
    }
    if (removed) maybe_rebuild(ix);
    if (n_removed) *n_removed = removed;
  } catch (const std::exception &e) {
    return twin_err_set(err, TWIN_EINTERNAL, "vector index remove: %s", e.what());
  }
  return 0;
}

void twin_vector_index_clear(twin_vector_index *ix) {
  MutexLock writer(&ix->writer);
  std::unique_ptr<Store> fresh = new_store(ix->opts);
  WriteLock w(&ix->lock);
  ix->store = std::move(fresh);
}

void twin_vector_index_swap(twin_vector_index *a, twin_vector_index *b) {
  if (a == b) return;
  twin_vector_index *first = a < b ? a : b, *second = a < b ? b : a;
  MutexLock w1(&first->writer);
  MutexLock w2(&second->writer);
  WriteLock l1(&first->lock);
  WriteLock l2(&second->lock);
  std::swap(a->store, b->store);
  std::swap(a->opts, b->opts);
  std::swap(a->rebuilds, b->rebuilds);
}

/* ---- searches ------------------------------------------------------------------------------ */

int twin_vector_index_search(twin_vector_index *ix, const float *queries, size_t nq, size_t k,
                             const twin_index_filter *filter, twin_index_hit *hits,
                             size_t *n_hits, twin_err *err) {
  if (nq == 0) return 0;
  if (k == 0 || k > 100000)
    return twin_err_set(err, TWIN_EINVAL, "vector index search: k = %zu (1..100000)", k);
  if (!queries || !hits || !n_hits)
    return twin_err_set(err, TWIN_EINVAL, "vector index search: NULL argument");
  const int dim = ix->opts.dim;
  std::vector<float> q(nq * (size_t)dim);
  for (size_t i = 0; i < nq; i++) {
    if (!all_finite(queries + i * (size_t)dim, dim))
      return twin_err_set(err, TWIN_EINVAL, "vector index search: query %zu is not finite", i);
    normalize_into(queries + i * (size_t)dim, &q[i * (size_t)dim], dim);
    n_hits[i] = 0;
  }
  try {
    ReadLock r(&ix->lock);
    OmpThreads threads(ix->opts.search_threads);
    const Store &s = *ix->store;
    size_t live = s.pos_of.size();
    if (live == 0) return 0;
    SlotSelector sel;
    sel.slots = &s.slots;
    bool filtered = false;
    size_t estimate = live; /* vectors the filter may let through */
    if (filter && filter->type_mask) {
      unsigned mask = filter->type_mask & ((1u << TWIN_DOC_TYPE_COUNT) - 1);
      if (!mask) return 0; /* only unknown types asked for */
      sel.type_mask = mask;
      filtered = true;
      size_t by_type = 0;
      for (int t = 0; t < TWIN_DOC_TYPE_COUNT; t++)
        if (mask & (1u << t)) by_type += s.live_by_type[t];
      estimate = std::min(estimate, by_type);
    }
    if (filter && filter->n_authors) {
      size_t by_author = 0;
      for (size_t a = 0; a < filter->n_authors; a++) {
        auto it = s.author_ids.find(filter->authors[a] ? filter->authors[a] : "");
        if (it == s.author_ids.end()) continue;
        sel.authors.push_back(it->second);
        by_author += s.live_by_author[it->second];
      }
      if (sel.authors.empty()) return 0; /* none of these authors has anything */
      filtered = true;
      estimate = std::min(estimate, by_author);
    }
    if (estimate == 0) return 0;
    size_t kk = std::min(k, live);
    std::vector<float> dist(nq * kk);
    std::vector<idx_t> labels(nq * kk);
    bool labels_are_positions = true;
    faiss::Index *inner = s.index->index;
    if (!s.hnsw) {
      if (filtered) {
        faiss::SearchParameters params;
        params.sel = &sel;
        inner->search((idx_t)nq, q.data(), (idx_t)kk, dist.data(), labels.data(), &params);
      } else {
        s.index->search((idx_t)nq, q.data(), (idx_t)kk, dist.data(), labels.data());
        labels_are_positions = false;
      }
    } else {
      auto *h = static_cast<faiss::IndexHNSW *>(inner);
      double selectivity = (double)estimate / (double)s.slots.size();
      if (filtered && selectivity < 0.05) {
        /* a graph walk finds too few members of a small subset: scan them exactly instead */
        faiss::SearchParameters params;
        params.sel = &sel;
        h->storage->search((idx_t)nq, q.data(), (idx_t)kk, dist.data(), labels.data(), &params);
      } else {
        faiss::SearchParametersHNSW params;
        int ef = std::max(ix->opts.hnsw_ef_search, (int)kk);
        if (filtered || s.tombstones) ef = (int)std::min(4096.0, ef / std::max(selectivity, 0.05));
        params.efSearch = ef;
        params.sel = (filtered || s.tombstones) ? &sel : nullptr;
        h->search((idx_t)nq, q.data(), (idx_t)kk, dist.data(), labels.data(), &params);
      }
    }
    for (size_t i = 0; i < nq; i++) {
      size_t m = 0;
      for (size_t j = 0; j < kk; j++) {
        idx_t label = labels[i * kk + j];
        if (label < 0) continue;
        idx_t pos = label;
        if (!labels_are_positions) {
          auto it = s.index->rev_map.find(label);
          if (it == s.index->rev_map.end()) continue;
          pos = it->second;
        }
        const Slot &slot = s.slots[(size_t)pos];
        if (!slot.alive) continue;
        twin_index_hit &hit = hits[i * k + m++];
        twin_strlcpy(hit.chunk_id, slot.chunk_id.c_str(), sizeof hit.chunk_id);
        hit.score = dist[i * kk + j];
      }
      n_hits[i] = m;
    }
  } catch (const std::exception &e) {
    return twin_err_set(err, TWIN_EINTERNAL, "vector index search: %s", e.what());
  }
  return 0;
}

/* ---- queries ------------------------------------------------------------------------------- */

size_t twin_vector_index_size(twin_vector_index *ix) {
  ReadLock r(&ix->lock);
  return ix->store->pos_of.size();
}

bool twin_vector_index_contains(twin_vector_index *ix, const char *chunk_id) {
  if (!chunk_id) return false;
  ReadLock r(&ix->lock);
  return ix->store->pos_of.count(chunk_id) != 0;
}

int twin_vector_index_get(twin_vector_index *ix, const char *chunk_id, float *out, twin_err *err) {
  ReadLock r(&ix->lock);
  const Store &s = *ix->store;
  auto it = chunk_id ? s.pos_of.find(chunk_id) : s.pos_of.end();
  if (it == s.pos_of.end())
    return twin_err_set(err, TWIN_ENOTFOUND, "vector index: no chunk \"%s\"", chunk_id ? chunk_id : "(null)");
  std::memcpy(out, stored_vectors(s) + (size_t)it->second * (size_t)ix->opts.dim,
              (size_t)ix->opts.dim * sizeof(float));
  return 0;
}

twin_index_kind twin_vector_index_current_kind(twin_vector_index *ix) {
  ReadLock r(&ix->lock);
  return ix->store->hnsw ? TWIN_INDEX_HNSW : TWIN_INDEX_EXACT;
}

void twin_vector_index_get_stats(twin_vector_index *ix, twin_vector_index_stats *out) {
  ReadLock r(&ix->lock);
  const Store &s = *ix->store;
  out->live = s.pos_of.size();
  out->stored = s.slots.size();
  out->tombstones = s.tombstones;
  out->rebuilds = ix->rebuilds;
  out->current = s.hnsw ? TWIN_INDEX_HNSW : TWIN_INDEX_EXACT;
}

int twin_vector_index_list(twin_vector_index *ix, char ***ids, size_t *n, twin_err *err) {
  *ids = nullptr;
  *n = 0;
  std::vector<std::string> all;
  {
    ReadLock r(&ix->lock);
    all.reserve(ix->store->pos_of.size());
    for (const auto &kv : ix->store->pos_of) all.push_back(kv.first);
  }
  std::sort(all.begin(), all.end());
  char **out = (char **)calloc(all.size() ? all.size() : 1, sizeof *out);
  if (!out) return twin_err_set(err, TWIN_ENOMEM, "vector index list: out of memory");
  for (size_t i = 0; i < all.size(); i++) {
    out[i] = strdup(all[i].c_str());
    if (!out[i]) {
      twin_vector_index_free_ids(out, i);
      return twin_err_set(err, TWIN_ENOMEM, "vector index list: out of memory");
    }
  }
  *ids = out;
  *n = all.size();
  return 0;
}

void twin_vector_index_free_ids(char **ids, size_t n) {
  if (!ids) return;
  for (size_t i = 0; i < n; i++) free(ids[i]);
  free(ids);
}

}  // extern "C"
