/* llm-svc/backend/cuda/profile.c — see profile.h. Events come from one pool made at creation
 * (two per pair); a step's pairs are read with cudaEventElapsedTime once the stream is idle.
 * Labels are matched by string, at most PROFILE_MAX_LABELS of them a table. */
#include "llm-svc/backend/cuda/profile.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROFILE_MAX_LABELS 48

typedef struct profile_table {
  const char *label[PROFILE_MAX_LABELS];
  double ms[PROFILE_MAX_LABELS];
  long calls[PROFILE_MAX_LABELS];
  int n_labels;
  long steps;
} profile_table;

/* TWIN_CUDA_PROFILE=step: decode steps that ran as graphs */
typedef struct step_table {
  cudaEvent_t mark[4];       /* this step's (twin_cuda_profile_mark_id) */
  unsigned char marked[4];
  double host_s[4];          /* host clock at this step's marks */
  double prev_start_s;       /* at the previous decode step's, 0: none */
  long steps, intervals;
  double device_ms, graph_ms, interval_s;
  double enqueue_s, launch_s; /* host: start mark to graph launch, in cudaGraphLaunch */
} step_table;

struct twin_cuda_profile {
  cudaStream_t stream;
  int steps_mode;           /* TWIN_CUDA_PROFILE=step */
  step_table st;
  cudaEvent_t *events;      /* [2 * TWIN_CUDA_PROFILE_MAX_PAIRS] start, end */
  const char **pair_label;  /* [TWIN_CUDA_PROFILE_MAX_PAIRS] */
  int n_pairs;              /* this step's */
  long dropped;             /* pairs past the pool, over all steps */
  int open;                 /* a begin without its end */
  profile_table table[2];   /* [other | decode] */
};

int twin_cuda_profile_create(cudaStream_t stream, twin_cuda_profile **out, twin_err *err) {
  *out = NULL;
  const char *v = getenv("TWIN_CUDA_PROFILE");
  if (!v || !*v || strcmp(v, "0") == 0) return 0;
  twin_cuda_profile *p = calloc(1, sizeof *p);
  if (!p) return twin_err_set(err, TWIN_ENOMEM, "cuda profile: out of memory");
  p->stream = stream;
  if (strcmp(v, "step") == 0) {
    p->steps_mode = 1;
    for (int i = 0; i < 4; i++) {
      cudaError_t e = cudaEventCreate(&p->st.mark[i]);
      if (e != cudaSuccess) {
        p->st.mark[i] = NULL;
        twin_cuda_profile_destroy(p);
        return twin_err_set(err, TWIN_EDEVICE, "cuda profile: cudaEventCreate: %s",
                            cudaGetErrorString(e));
      }
    }
    *out = p;
    return 0;
  }
  p->events = calloc(2 * TWIN_CUDA_PROFILE_MAX_PAIRS, sizeof *p->events);
  p->pair_label = calloc(TWIN_CUDA_PROFILE_MAX_PAIRS, sizeof *p->pair_label);
  if (!p->events || !p->pair_label) {
    twin_cuda_profile_destroy(p);
    return twin_err_set(err, TWIN_ENOMEM, "cuda profile: out of memory");
  }
  for (int i = 0; i < 2 * TWIN_CUDA_PROFILE_MAX_PAIRS; i++) {
    cudaError_t e = cudaEventCreate(&p->events[i]);
    if (e != cudaSuccess) {
      p->events[i] = NULL;
      twin_cuda_profile_destroy(p);
      return twin_err_set(err, TWIN_EDEVICE, "cuda profile: cudaEventCreate: %s",
                          cudaGetErrorString(e));
    }
  }
  *out = p;
  return 0;
}

void twin_cuda_profile_destroy(twin_cuda_profile *p) {
  if (!p) return;
  for (int i = 0; i < 4; i++)
    if (p->st.mark[i]) cudaEventDestroy(p->st.mark[i]);
  if (p->events)
    for (int i = 0; i < 2 * TWIN_CUDA_PROFILE_MAX_PAIRS; i++)
      if (p->events[i]) cudaEventDestroy(p->events[i]);
  free(p->events);
  free(p->pair_label);
  free(p);
}

int twin_cuda_profile_eager(const twin_cuda_profile *p) { return p && !p->steps_mode; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void twin_cuda_profile_mark(twin_cuda_profile *p, twin_cuda_profile_mark_id which) {
  if (!p || !p->steps_mode || which < 0 || which > 3) return;
  if (which == TWIN_PROFILE_STEP_START) memset(p->st.marked, 0, sizeof p->st.marked);
  p->st.host_s[which] = now_s();
  p->st.marked[which] = cudaEventRecord(p->st.mark[which], p->stream) == cudaSuccess;
}

/* after the stream has synchronised: a decode step with all four marks is counted */
static void steps_add(twin_cuda_profile *p, int decode) {
  step_table *t = &p->st;
  const int whole = t->marked[0] && t->marked[1] && t->marked[2] && t->marked[3];
  if (!decode || !whole) {
    t->prev_start_s = 0.0;
    return;
  }
  float dev = 0.0f, graph = 0.0f;
  if (cudaEventElapsedTime(&dev, t->mark[0], t->mark[3]) != cudaSuccess ||
      cudaEventElapsedTime(&graph, t->mark[1], t->mark[2]) != cudaSuccess)
    return;
  t->steps++;
  t->device_ms += dev;
  t->graph_ms += graph;
  t->enqueue_s += t->host_s[TWIN_PROFILE_GRAPH_START] - t->host_s[TWIN_PROFILE_STEP_START];
  t->launch_s += t->host_s[TWIN_PROFILE_GRAPH_END] - t->host_s[TWIN_PROFILE_GRAPH_START];
  if (t->prev_start_s > 0.0) {
    t->intervals++;
    t->interval_s += t->host_s[TWIN_PROFILE_STEP_START] - t->prev_start_s;
  }
  t->prev_start_s = t->host_s[TWIN_PROFILE_STEP_START];
}

void twin_cuda_profile_begin(twin_cuda_profile *p) {
  if (!p || p->steps_mode) return;
  p->open = p->n_pairs < TWIN_CUDA_PROFILE_MAX_PAIRS;
  if (p->open) cudaEventRecord(p->events[2 * p->n_pairs], p->stream);
  else p->dropped++;
}

void twin_cuda_profile_end(twin_cuda_profile *p, const char *label) {
  if (!p || p->steps_mode || !p->open) return;
  cudaEventRecord(p->events[2 * p->n_pairs + 1], p->stream);
  p->pair_label[p->n_pairs++] = label;
  p->open = 0;
}

static void table_add(profile_table *t, const char *label, double ms) {
  int i = 0;
  while (i < t->n_labels && strcmp(t->label[i], label) != 0) i++;
  if (i == t->n_labels) {
    if (t->n_labels == PROFILE_MAX_LABELS) i = PROFILE_MAX_LABELS - 1; /* "other" */
    else t->label[t->n_labels++] = label;
  }
  t->ms[i] += ms;
  t->calls[i]++;
}

void twin_cuda_profile_step(twin_cuda_profile *p, int decode) {
  if (!p) return;
  if (p->steps_mode) {
    steps_add(p, decode);
    return;
  }
  profile_table *t = &p->table[decode ? 1 : 0];
  for (int i = 0; i < p->n_pairs; i++) {
    float ms = 0.0f;
    if (cudaEventElapsedTime(&ms, p->events[2 * i], p->events[2 * i + 1]) == cudaSuccess)
      table_add(t, p->pair_label[i], ms);
  }
  if (p->n_pairs) t->steps++;
  p->n_pairs = 0;
  p->open = 0;
}

static void print_table(const profile_table *t, const char *what, FILE *f) {
  if (!t->steps) return;
  double total = 0.0;
  for (int i = 0; i < t->n_labels; i++) total += t->ms[i];
  int order[PROFILE_MAX_LABELS];
  for (int i = 0; i < t->n_labels; i++) order[i] = i;
  for (int i = 1; i < t->n_labels; i++) /* by time, largest first */
    for (int j = i; j > 0 && t->ms[order[j]] > t->ms[order[j - 1]]; j--) {
      int k = order[j];
      order[j] = order[j - 1];
      order[j - 1] = k;
    }
  fprintf(f, "cuda profile, %s steps: %ld steps, %.1f us a step in %d labels (each kernel "
          "alone, eager; a graph step overlaps them)\n", what, t->steps,
          total * 1e3 / (double)t->steps, t->n_labels);
  fprintf(f, "  %-22s %10s %12s %12s %7s\n", "kernel", "calls/step", "us/step", "us/call",
          "share");
  for (int k = 0; k < t->n_labels; k++) {
    const int i = order[k];
    fprintf(f, "  %-22s %10.1f %12.1f %12.2f %6.1f%%\n", t->label[i],
            (double)t->calls[i] / (double)t->steps, t->ms[i] * 1e3 / (double)t->steps,
            t->ms[i] * 1e3 / (double)t->calls[i], total > 0 ? 100.0 * t->ms[i] / total : 0.0);
  }
}

void twin_cuda_profile_print(const twin_cuda_profile *p, FILE *f) {
  if (!p) return;
  if (p->steps_mode) {
    const step_table *t = &p->st;
    if (!t->steps) {
      fprintf(f, "cuda profile: no decode step ran as a graph\n");
      return;
    }
    const double dev = t->device_ms * 1e3 / (double)t->steps, graph = t->graph_ms * 1e3 / (double)t->steps;
    fprintf(f, "cuda profile, decode steps as graphs: %ld steps; device %.1f us a step (copies "
            "and graph), graph %.1f us", t->steps, dev, graph);
    if (t->intervals) {
      const double wall = t->interval_s * 1e6 / (double)t->intervals;
      fprintf(f, "; host %.1f us from a step's start to the next: the device idles %.1f us "
              "(%.1f%%) a step", wall, wall - dev, wall > 0 ? 100.0 * (wall - dev) / wall : 0.0);
    }
    fprintf(f, "; host calls: %.1f us from the first copy to the graph launch, %.1f us in "
            "cudaGraphLaunch", t->enqueue_s * 1e6 / (double)t->steps,
            t->launch_s * 1e6 / (double)t->steps);
    fprintf(f, "\n");
    return;
  }
  print_table(&p->table[1], "decode", f);
  print_table(&p->table[0], "prefill and mixed", f);
  if (p->dropped)
    fprintf(f, "cuda profile: %ld operations past %d a step were not timed\n", p->dropped,
            TWIN_CUDA_PROFILE_MAX_PAIRS);
}
