/* business-svc/cli/twinctl.c — the command-line client of a Twin stack, over gRPC:
 *   ask QUESTION      stream an answer: its sources first, then the text as it arrives
 *   search QUERY      the ranked chunks alone
 *   ingest PATH|URL.. read files, directories and JSONL locally (URLs are fetched by the server),
 *                     send them to Ingest in batches, with progress on stderr
 *   delete DOC_ID     remove a document and its chunks
 *   traces list|show  the monitor's traces
 *   health            every service's health
 * Exit codes: 0 ok, 1 the request failed, 2 bad usage, 3 a service is unavailable or not
 * serving, 4 not found, 5 deadline exceeded. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "business-svc/rag/document.h"
#include "business-svc/rag/reader.h"
#include "common/log.h"
#include "common/rpc/client.h"
#include "common/util.h"
#include "proto/business.pb-c.h"
#include "proto/health.pb-c.h"
#include "proto/monitor.pb-c.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNAVAILABLE = 3, EXIT_NOT_FOUND = 4, EXIT_DEADLINE = 5 };

typedef struct ctl {
  const char *business, *monitor, *llm;
  double timeout_s;
  int json;
} ctl;

static int exit_for(twin_rpc_code code) {
  switch (code) {
    case TWIN_RPC_OK: return EXIT_OK;
    case TWIN_RPC_UNAVAILABLE: return EXIT_UNAVAILABLE;
    case TWIN_RPC_NOT_FOUND: return EXIT_NOT_FOUND;
    case TWIN_RPC_DEADLINE_EXCEEDED: return EXIT_DEADLINE;
    case TWIN_RPC_INVALID_ARGUMENT: return EXIT_USAGE;
    default: return EXIT_FAILED;
  }
}

static int fail_status(const char *what, const twin_rpc_status *st) {
  fprintf(stderr, "twinctl: %s: %s: %s\n", what, twin_rpc_code_name(st->code), st->message);
  return exit_for(st->code);
}

static twin_rpc_channel *channel(const char *target) {
  twin_rpc_channel *ch = NULL;
  twin_err err;
  if (twin_rpc_channel_create(target, NULL, &ch, &err) != 0) {
    fprintf(stderr, "twinctl: %s\n", err.msg);
    return NULL;
  }
  return ch;
}

static int64_t deadline_ms(const ctl *c) { return c->timeout_s > 0 ? (int64_t)(c->timeout_s * 1000) : 0; }

/* Unary call with a packed request; *resp is the unpacked answer (caller frees). */
static int call_unary(const ctl *c, const char *target, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp) {
  twin_rpc_channel *ch = channel(target);
  if (!ch) return EXIT_USAGE;
  size_t n = protobuf_c_message_get_packed_size(req);
  uint8_t *buf = malloc(n ? n : 1);
  protobuf_c_message_pack(req, buf);
  uint8_t *out;
  size_t olen;
  twin_rpc_status st;
  int rc = twin_rpc_unary(ch, method, buf, n, deadline_ms(c), NULL, 0, &out, &olen, &st);
  free(buf);
  twin_rpc_channel_destroy(ch);
  if (rc) return fail_status(method, &st);
  *resp = protobuf_c_message_unpack(resp_desc, NULL, olen, out);
  free(out);
  if (!*resp) {
    fprintf(stderr, "twinctl: %s: malformed answer\n", method);
    return EXIT_FAILED;
  }
  return EXIT_OK;
}

static void print_source(int i, const Twin__Business__V1__Source *s) {
  printf("  [%d] %.3f  %s%s%s%s%s  (%s, chunk %.12s)\n", i + 1, s->score, s->title[0] ? s->title : s->doc_id,
         s->author[0] ? " — " : "", s->author, s->link[0] ? "  " : "", s->link, s->doc_type, s->chunk_id);
}

/* ==== ask =================================================================================== */

static int cmd_ask(const ctl *c, int argc, char **argv) {
  static const struct option o[] = {{"author", 1, 0, 'a'}, {"session", 1, 0, 's'}, {"temperature", 1, 0, 't'},
                                    {"max-new-tokens", 1, 0, 'n'}, {"template", 1, 0, 'T'}, {"no-cache", 0, 0, 'C'},
                                    {"seed", 1, 0, 'S'}, {"expansions", 1, 0, 'e'}, {"no-rerank", 0, 0, 'R'},
                                    {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
  Twin__Business__V1__AskRequest req = TWIN__BUSINESS__V1__ASK_REQUEST__INIT;
  Twin__Business__V1__Sampling samp = TWIN__BUSINESS__V1__SAMPLING__INIT;
  Twin__Business__V1__RetrievalOptions ret = TWIN__BUSINESS__V1__RETRIEVAL_OPTIONS__INIT;
  req.sampling = &samp;
  req.retrieval = &ret;
  int opt;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
    switch (opt) {
      case 'a': ret.author = optarg; break;
      case 's': req.session_id = optarg; break;
      case 't': samp.temperature_opt_case = TWIN__BUSINESS__V1__SAMPLING__TEMPERATURE_OPT_TEMPERATURE; samp.temperature = (float)atof(optarg); break;
      case 'n': samp.max_new_tokens = (uint32_t)atoi(optarg); break;
      case 'T': req.template_ = optarg; break;
      case 'C': req.no_cache = 1; break;
      case 'S': samp.seed_opt_case = TWIN__BUSINESS__V1__SAMPLING__SEED_OPT_SEED; samp.seed = strtoull(optarg, NULL, 10); break;
      case 'e': ret.expansions_opt_case = TWIN__BUSINESS__V1__RETRIEVAL_OPTIONS__EXPANSIONS_OPT_EXPANSIONS; ret.expansions = (uint32_t)atoi(optarg); break;
      case 'R': ret.rerank_opt_case = TWIN__BUSINESS__V1__RETRIEVAL_OPTIONS__RERANK_OPT_RERANK; ret.rerank = 0; break;
      case 'h':
        printf("usage: twinctl ask QUESTION [--author NAME] [--session ID] [--temperature T] [--seed N]\n"
               "                [--max-new-tokens N] [--template NAME[@V]] [--expansions N] [--no-rerank] [--no-cache]\n");
        return EXIT_OK;
      default: return EXIT_USAGE;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "twinctl ask: give exactly one QUESTION (see twinctl ask --help)\n");
    return EXIT_USAGE;
  }
  req.query = argv[optind];
  twin_rpc_channel *ch = channel(c->business);
  if (!ch) return EXIT_USAGE;
  size_t n = twin__business__v1__ask_request__get_packed_size(&req);
  uint8_t *buf = malloc(n ? n : 1);
  twin__business__v1__ask_request__pack(&req, buf);
  twin_rpc_stream *s;
  twin_err err;
  int rc = twin_rpc_stream_start(ch, "/twin.business.v1.TwinService/Ask", buf, n, deadline_ms(c), NULL, 0, &s, &err);
  free(buf);
  if (rc) {
    fprintf(stderr, "twinctl: %s\n", err.msg);
    twin_rpc_channel_destroy(ch);
    return EXIT_FAILED;
  }
  uint8_t *msg;
  size_t mlen;
  int printed_text = 0;
  while (twin_rpc_stream_next(s, &msg, &mlen) == 1) {
    Twin__Business__V1__AskResponse *m = twin__business__v1__ask_response__unpack(NULL, mlen, msg);
    free(msg);
    if (!m) continue;
    if (m->event_case == TWIN__BUSINESS__V1__ASK_RESPONSE__EVENT_SOURCES) {
      printf("Sources:\n");
      for (size_t i = 0; i < m->sources->n_items; i++) print_source((int)i, m->sources->items[i]);
      if (!m->sources->n_items) printf("  (none)\n");
      printf("\nAnswer:\n");
    } else if (m->event_case == TWIN__BUSINESS__V1__ASK_RESPONSE__EVENT_TEXT) {
      fputs(m->text, stdout);
      fflush(stdout);
      printed_text = 1;
    } else if (m->event_case == TWIN__BUSINESS__V1__ASK_RESPONSE__EVENT_SUMMARY) {
      const Twin__Business__V1__AskSummary *sum = m->summary;
      printf("%s\n\n[%s; %u prompt + %u completion tokens; first token %.0f ms, total %.0f ms; %s%s; trace %s]\n",
             printed_text ? "" : "(empty answer)", sum->finish_reason, sum->prompt_tokens, sum->completion_tokens,
             sum->ttft_ms, sum->total_ms, sum->model, sum->cache_hit ? ", from the cache" : "", sum->trace_id);
      fprintf(stderr, "stages:");
      for (size_t i = 0; i < sum->n_timings; i++) fprintf(stderr, " %s %.1f ms%s", sum->timings[i]->stage, sum->timings[i]->ms, i + 1 < sum->n_timings ? "," : "\n");
    }
    twin__business__v1__ask_response__free_unpacked(m, NULL);
  }
  twin_rpc_status st = *twin_rpc_stream_status(s);
  twin_rpc_stream_destroy(s);
  twin_rpc_channel_destroy(ch);
  return st.code == TWIN_RPC_OK ? EXIT_OK : fail_status("ask", &st);
}

/* ==== search ================================================================================ */

static int cmd_search(const ctl *c, int argc, char **argv) {
  if (argc != 2 || !strcmp(argv[1], "--help")) {
    fprintf(argc == 2 ? stdout : stderr, "usage: twinctl search QUERY\n");
    return argc == 2 ? EXIT_OK : EXIT_USAGE;
  }
  Twin__Business__V1__SearchRequest req = TWIN__BUSINESS__V1__SEARCH_REQUEST__INIT;
  req.query = argv[1];
  Twin__Business__V1__SearchResponse *resp;
  int rc = call_unary(c, c->business, "/twin.business.v1.TwinService/Search", &req.base,
                      &twin__business__v1__search_response__descriptor, (ProtobufCMessage **)&resp);
  if (rc) return rc;
  for (size_t i = 0; i < resp->n_results; i++) {
    print_source((int)i, resp->results[i]);
    printf("      %.200s\n", resp->results[i]->snippet);
  }
  twin__business__v1__search_response__free_unpacked(resp, NULL);
  return EXIT_OK;
}

/* ==== ingest ================================================================================ */

typedef struct ingest_batch {
  twin_document docs[32];
  int n;
  int errors;
} ingest_batch;

static int collect_doc(void *ctx, twin_document *doc, const char *where, int code, const char *message) {
  ingest_batch *b = ctx;
  (void)code;
  if (!doc) {
    fprintf(stderr, "twinctl ingest: %s: %s\n", where, message);
    b->errors++;
    return 0;
  }
  if (b->n == 32) {
    twin_document_free(doc);
    free(doc);
    return 0;
  }
  b->docs[b->n++] = *doc;
  free(doc);
  return 0;
}

static int send_batch(const ctl *c, ingest_batch *b, const char *const *urls, size_t n_urls, unsigned *chunks,
                      unsigned *unchanged, unsigned *documents) {
  Twin__Business__V1__Document pd[32], *pp[32];
  for (int i = 0; i < b->n; i++) {
    twin__business__v1__document__init(&pd[i]);
    pd[i].text = b->docs[i].text;
    pd[i].author = b->docs[i].author;
    pd[i].title = b->docs[i].title;
    pd[i].link = b->docs[i].link;
    pd[i].doc_id = b->docs[i].id;
    pd[i].doc_type = (char *)twin_doc_type_name(b->docs[i].type);
    pp[i] = &pd[i];
  }
  Twin__Business__V1__IngestRequest req = TWIN__BUSINESS__V1__INGEST_REQUEST__INIT;
  req.n_documents = (size_t)b->n;
  req.documents = pp;
  req.n_urls = n_urls;
  req.urls = (char **)urls;
  Twin__Business__V1__IngestResponse *resp;
  int rc = call_unary(c, c->business, "/twin.business.v1.TwinService/Ingest", &req.base,
                      &twin__business__v1__ingest_response__descriptor, (ProtobufCMessage **)&resp);
  for (int i = 0; i < b->n; i++) twin_document_free(&b->docs[i]);
  b->n = 0;
  if (rc) return rc;
  *chunks += resp->chunks;
  *unchanged += resp->chunks_unchanged;
  *documents += resp->documents;
  twin__business__v1__ingest_response__free_unpacked(resp, NULL);
  return EXIT_OK;
}

static int cmd_ingest(const ctl *c, int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help")) {
    fprintf(argc >= 2 ? stdout : stderr, "usage: twinctl ingest PATH|URL...  (files, directories, *.jsonl, http(s) URLs)\n");
    return argc >= 2 ? EXIT_OK : EXIT_USAGE;
  }
  unsigned chunks = 0, unchanged = 0, documents = 0;
  int failures = 0;
  twin_reader_options ro = {0};
  for (int i = 1; i < argc; i++) {
    const char *src = argv[i];
    int rc;
    if (!strncmp(src, "http://", 7) || !strncmp(src, "https://", 8)) {
      ingest_batch b = {.n = 0};
      rc = send_batch(c, &b, &src, 1, &chunks, &unchanged, &documents);
    } else {
      ingest_batch *b = calloc(1, sizeof *b);
      twin_err err;
      /* read locally, then send in batches of up to 32 documents */
      rc = twin_read_source(src, &ro, collect_doc, b, &err);
      if (rc) fprintf(stderr, "twinctl ingest: %s\n", err.msg);
      else rc = b->n ? send_batch(c, b, NULL, 0, &chunks, &unchanged, &documents) : EXIT_OK;
      failures += b->errors;
      free(b);
    }
    if (rc) failures++;
    fprintf(stderr, "ingest [%d/%d] %s: %s (so far %u documents, %u new chunks, %u unchanged)\n", i, argc - 1, src,
            rc ? "failed" : "ok", documents, chunks, unchanged);
    if (rc == EXIT_UNAVAILABLE) return rc;
  }
  printf("ingested %u documents: %u new chunks, %u unchanged%s\n", documents, chunks, unchanged,
         failures ? " (some inputs failed, see above)" : "");
  return failures ? EXIT_FAILED : EXIT_OK;
}

/* ==== delete ================================================================================ */

static int cmd_delete(const ctl *c, int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: twinctl delete DOC_ID\n");
    return EXIT_USAGE;
  }
  Twin__Business__V1__DeleteDocumentRequest req = TWIN__BUSINESS__V1__DELETE_DOCUMENT_REQUEST__INIT;
  req.doc_id = argv[1];
  Twin__Business__V1__DeleteDocumentResponse *resp;
  int rc = call_unary(c, c->business, "/twin.business.v1.TwinService/DeleteDocument", &req.base,
                      &twin__business__v1__delete_document_response__descriptor, (ProtobufCMessage **)&resp);
  if (rc) return rc;
  printf("deleted %s: %u chunks\n", argv[1], resp->chunks_deleted);
  twin__business__v1__delete_document_response__free_unpacked(resp, NULL);
  return EXIT_OK;
}

/* ==== traces ================================================================================ */

static int cmd_traces(const ctl *c, int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "show") && argc == 3) {
    Twin__Monitor__V1__GetTraceRequest req = TWIN__MONITOR__V1__GET_TRACE_REQUEST__INIT;
    req.trace_id = argv[2];
    Twin__Monitor__V1__Trace *t;
    int rc = call_unary(c, c->monitor, "/twin.monitor.v1.MonitorService/GetTrace", &req.base,
                        &twin__monitor__v1__trace__descriptor, (ProtobufCMessage **)&t);
    if (rc) return rc;
    printf("trace %s  model %s  template %s@%s  %s\n", t->trace_id, t->model, t->template_name, t->template_version,
           t->error[0] ? t->error : "ok");
    printf("query: %s\nanswer: %s\n", t->query, t->answer);
    printf("tokens: %u prompt + %u completion; first token %.0f ms; total %.0f ms; cost $%.6f%s\n", t->prompt_tokens,
           t->completion_tokens, t->ttft_ms, t->total_ms, t->cost_usd, t->cache_hit ? "; cache hit" : "");
    for (size_t i = 0; i < t->n_stages; i++) printf("  %-12s %8.1f ms\n", t->stages[i]->stage, t->stages[i]->ms);
    for (size_t i = 0; i < t->n_sources; i++) printf("  source %s (%s) %.3f\n", t->sources[i]->chunk_id, t->sources[i]->doc_id, t->sources[i]->score);
    twin__monitor__v1__trace__free_unpacked(t, NULL);
    return EXIT_OK;
  }
  if (argc >= 2 && !strcmp(argv[1], "list")) {
    Twin__Monitor__V1__ListTracesRequest req = TWIN__MONITOR__V1__LIST_TRACES_REQUEST__INIT;
    req.page_size = 20;
    for (int i = 2; i < argc; i++) {
      if (!strcmp(argv[i], "--limit") && i + 1 < argc) req.page_size = (uint32_t)atoi(argv[++i]);
      else if (!strcmp(argv[i], "--model") && i + 1 < argc) req.model = argv[++i];
      else if (!strcmp(argv[i], "--text") && i + 1 < argc) req.text = argv[++i];
      else if (!strcmp(argv[i], "--errors")) req.errors_only = 1;
      else {
        fprintf(stderr, "usage: twinctl traces list [--limit N] [--model M] [--text T] [--errors]\n");
        return EXIT_USAGE;
      }
    }
    Twin__Monitor__V1__ListTracesResponse *resp;
    int rc = call_unary(c, c->monitor, "/twin.monitor.v1.MonitorService/ListTraces", &req.base,
                        &twin__monitor__v1__list_traces_response__descriptor, (ProtobufCMessage **)&resp);
    if (rc) return rc;
    for (size_t i = 0; i < resp->n_traces; i++) {
      const Twin__Monitor__V1__Trace *t = resp->traces[i];
      printf("%s  %8.0f ms  %-20.20s  %-5s  %.60s\n", t->trace_id, t->total_ms, t->model, t->error[0] ? "error" : "ok", t->query);
    }
    printf("(%zu of %llu)\n", resp->n_traces, (unsigned long long)resp->total);
    twin__monitor__v1__list_traces_response__free_unpacked(resp, NULL);
    return EXIT_OK;
  }
  fprintf(stderr, "usage: twinctl traces list [--limit N] [--model M] [--text T] [--errors] | traces show TRACE_ID\n");
  return EXIT_USAGE;
}

/* ==== health ================================================================================ */

static int cmd_health(const ctl *c) {
  struct { const char *name, *target, *service; } svcs[] = {
      {"llm-svc", c->llm, "twin.llm.v1.LlmService"},
      {"business-svc", c->business, "twin.business.v1.TwinService"},
      {"monitor-svc", c->monitor, "twin.monitor.v1.MonitorService"},
  };
  int worst = EXIT_OK;
  for (size_t i = 0; i < 3; i++) {
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)svcs[i].service;
    twin_rpc_channel *ch = channel(svcs[i].target);
    if (!ch) return EXIT_USAGE;
    uint8_t buf[128], *out;
    size_t n = grpc__health__v1__health_check_request__pack(&req, buf), olen;
    twin_rpc_status st;
    int rc = twin_rpc_unary(ch, "/grpc.health.v1.Health/Check", buf, n, 3000, NULL, 0, &out, &olen, &st);
    twin_rpc_channel_destroy(ch);
    const char *state = "UNREACHABLE";
    if (rc == 0) {
      Grpc__Health__V1__HealthCheckResponse *r = grpc__health__v1__health_check_response__unpack(NULL, olen, out);
      free(out);
      state = r && r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ? "SERVING" : "NOT_SERVING";
      if (r) grpc__health__v1__health_check_response__free_unpacked(r, NULL);
    }
    printf("%-13s %-22s %s\n", svcs[i].name, svcs[i].target, state);
    if (strcmp(state, "SERVING")) worst = EXIT_UNAVAILABLE;
  }
  return worst;
}

/* ==== main ================================================================================== */

static void usage(FILE *f) {
  fprintf(f,
          "usage: twinctl [--business TARGET] [--monitor TARGET] [--llm TARGET] [--timeout S] COMMAND ...\n"
          "commands: ask QUESTION | search QUERY | ingest PATH|URL... | delete DOC_ID |\n"
          "          traces list|show | health      (COMMAND --help for its options)\n"
          "targets default to TWIN_BUSINESS (127.0.0.1:50052), TWIN_MONITOR (127.0.0.1:50053),\n"
          "TWIN_LLM (127.0.0.1:50051). Exit codes: 0 ok, 1 failed, 2 usage, 3 unavailable,\n"
          "4 not found, 5 deadline exceeded.\n");
}

int main(int argc, char **argv) {
  twin_log_init("twinctl", TWIN_LOG_WARN, 0);
  ctl c = {.business = getenv("TWIN_BUSINESS"), .monitor = getenv("TWIN_MONITOR"), .llm = getenv("TWIN_LLM"),
           .timeout_s = 300};
  if (!c.business) c.business = "127.0.0.1:50052";
  if (!c.monitor) c.monitor = "127.0.0.1:50053";
  if (!c.llm) c.llm = "127.0.0.1:50051";
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--business") && i + 1 < argc) c.business = argv[++i];
    else if (!strcmp(argv[i], "--monitor") && i + 1 < argc) c.monitor = argv[++i];
    else if (!strcmp(argv[i], "--llm") && i + 1 < argc) c.llm = argv[++i];
    else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) c.timeout_s = atof(argv[++i]);
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return EXIT_OK;
    } else {
      fprintf(stderr, "twinctl: unknown option %s\n", argv[i]);
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  if (i >= argc) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[i];
  int sub_argc = argc - i;
  char **sub_argv = argv + i;
  if (!strcmp(cmd, "ask")) return cmd_ask(&c, sub_argc, sub_argv);
  if (!strcmp(cmd, "search")) return cmd_search(&c, sub_argc, sub_argv);
  if (!strcmp(cmd, "ingest")) return cmd_ingest(&c, sub_argc, sub_argv);
  if (!strcmp(cmd, "delete")) return cmd_delete(&c, sub_argc, sub_argv);
  if (!strcmp(cmd, "traces")) return cmd_traces(&c, sub_argc, sub_argv);
  if (!strcmp(cmd, "health")) return cmd_health(&c);
  fprintf(stderr, "twinctl: unknown command '%s'\n", cmd);
  usage(stderr);
  return EXIT_USAGE;
}
