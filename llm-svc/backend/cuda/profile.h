/* llm-svc/backend/cuda/profile.h — where the CUDA backend's step time goes, on request
 * (TWIN_CUDA_PROFILE in the environment), printed when the backend is destroyed.
 *  - TWIN_CUDA_PROFILE=1: the per-kernel split. An event pair brackets every kernel or
 *    projection the backend enqueues; when a step has finished, the pairs are read and summed by
 *    label, separately for decode steps (one token per sequence) and the others. The backend
 *    runs eagerly (no CUDA graphs), and an event between two kernels stops the next one from
 *    starting early, so each figure is the kernel alone and their sum is above a graph step's
 *    time: the split says where the time goes, the graph step says how long it takes.
 *  - TWIN_CUDA_PROFILE=step: decode steps as they run (graphs on): the host's time from one
 *    step's start to the next, the device's from the step's first copy to its last, and the
 *    graph's alone; what is left is the device idling between steps (host work, launch).
 * Plain C; every function takes NULL (profiling off) and then does nothing. */
#ifndef TWIN_BACKEND_CUDA_PROFILE_H
#define TWIN_BACKEND_CUDA_PROFILE_H

#include <cuda_runtime_api.h>
#include <stdio.h>

#include "common/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct twin_cuda_profile twin_cuda_profile;

/* *out = a profile recording on `stream` (borrowed), or NULL when TWIN_CUDA_PROFILE is unset. */
int twin_cuda_profile_create(cudaStream_t stream, twin_cuda_profile **out, twin_err *err);
void twin_cuda_profile_destroy(twin_cuda_profile *p);

/* 1 when the profile times kernels one by one (the backend must then run without graphs). */
int twin_cuda_profile_eager(const twin_cuda_profile *p);

/* Step marks (TWIN_CUDA_PROFILE=step), recorded on the stream as the step is enqueued: before
 * its first host-to-device copy, around the graph launch, after its last copy back. */
typedef enum {
  TWIN_PROFILE_STEP_START = 0,
  TWIN_PROFILE_GRAPH_START = 1,
  TWIN_PROFILE_GRAPH_END = 2,
  TWIN_PROFILE_STEP_END = 3,
} twin_cuda_profile_mark_id;
void twin_cuda_profile_mark(twin_cuda_profile *p, twin_cuda_profile_mark_id which);

/* Brackets one enqueued operation; label is a string literal (kept by pointer). A step records
 * at most TWIN_CUDA_PROFILE_MAX_PAIRS pairs; the rest go uncounted (and are reported). */
#define TWIN_CUDA_PROFILE_MAX_PAIRS 2048
void twin_cuda_profile_begin(twin_cuda_profile *p);
void twin_cuda_profile_end(twin_cuda_profile *p, const char *label);

/* After the stream has synchronised: adds the step's pairs to the decode table (decode != 0) or
 * the other one, and starts the next step. */
void twin_cuda_profile_step(twin_cuda_profile *p, int decode);

/* Labels by share of the time, per step: calls, microseconds a step, share. */
void twin_cuda_profile_print(const twin_cuda_profile *p, FILE *f);

#ifdef __cplusplus
}
#endif

#endif
