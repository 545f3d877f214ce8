/* tests/gpu/test_profile.cu — the backend's per-kernel time split (profile.c): off unless
 * TWIN_CUDA_PROFILE is set (NULL, and every call a no-op on NULL); with it, operations bracketed
 * by begin/end are summed by label per step kind, and the printed table has the right steps,
 * calls per step and times (a kernel that spins ~20 us shows 10-1000 us a call, a label timed
 * twice a step shows 2 calls a step), decode and other steps apart. With TWIN_CUDA_PROFILE=step
 * the profile is not eager, and marks around spinning kernels and a host pause give the steps
 * counted (a step without its graph marks is not), graph < device < host interval times. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "llm-svc/backend/cuda/profile.h"
#include "tests/gpu/harness.h"

static __global__ void spin_kernel(long long cycles) {
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
}

/* the table line of a label: calls/step and us/call, or false */
static bool table_row(const std::string &out, const char *label, double *calls, double *us_call) {
  const size_t at = out.find(std::string("  ") + label + " ");
  if (at == std::string::npos) return false;
  double us_step = 0;
  return sscanf(out.c_str() + at + 2 + strlen(label), "%lf %lf %lf", calls, &us_step, us_call) == 3;
}

int main() {
  print_device();
  harness h;
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  twin_err err;

  unsetenv("TWIN_CUDA_PROFILE");
  twin_cuda_profile *off = (twin_cuda_profile *)1;
  const bool off_ok = twin_cuda_profile_create(s, &off, &err) == 0 && off == nullptr;
  twin_cuda_profile_begin(off); /* no-ops */
  twin_cuda_profile_end(off, "x");
  twin_cuda_profile_step(off, 1);
  twin_cuda_profile_print(off, stdout);
  twin_cuda_profile_destroy(off);
  h.check("profile off without TWIN_CUDA_PROFILE (NULL, calls are no-ops)", off_ok, "a profile was made");

  setenv("TWIN_CUDA_PROFILE", "1", 1);
  twin_cuda_profile *p = nullptr;
  if (twin_cuda_profile_create(s, &p, &err) != 0 || !p) {
    h.check("profile on with TWIN_CUDA_PROFILE=1", false, err.msg);
    return h.exit_code();
  }
  const long long cycles = 40000; /* ~20 us */
  for (int step = 0; step < 3; step++) { /* two decode steps, one other */
    twin_cuda_profile_begin(p);
    spin_kernel<<<1, 32, 0, s>>>(cycles);
    twin_cuda_profile_end(p, "spin");
    for (int k = 0; k < 2; k++) {
      twin_cuda_profile_begin(p);
      spin_kernel<<<1, 32, 0, s>>>(10);
      twin_cuda_profile_end(p, "short");
    }
    CK(cudaStreamSynchronize(s));
    twin_cuda_profile_step(p, step < 2);
  }
  FILE *f = tmpfile();
  twin_cuda_profile_print(p, f);
  rewind(f);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, f)) out += buf;
  fclose(f);
  printf("%s", out.c_str());
  const size_t other = out.find("prefill and mixed steps");
  const std::string decode = out.substr(0, other), rest = other == std::string::npos ? "" : out.substr(other);
  double calls = 0, us = 0, calls2 = 0, us2 = 0;
  const bool spin = table_row(decode, "spin", &calls, &us), shrt = table_row(decode, "short", &calls2, &us2);
  h.check("profile: decode table has 2 steps, spin 1 call a step of 10-1000 us, short 2 calls a step",
          decode.find("decode steps: 2 steps") != std::string::npos && spin && calls == 1.0 && us > 10.0 &&
              us < 1000.0 && shrt && calls2 == 2.0 && us2 < us,
          "the decode table's steps, calls or times are wrong");
  h.check("profile: the other step in its own table (1 step)",
          rest.find("prefill and mixed steps: 1 steps") != std::string::npos && table_row(rest, "spin", &calls, &us) &&
              calls == 1.0,
          "the non-decode step is missing or counted with the decode ones");
  h.check("profile: TWIN_CUDA_PROFILE=1 is eager", twin_cuda_profile_eager(p) == 1, "not eager");
  twin_cuda_profile_destroy(p);

  setenv("TWIN_CUDA_PROFILE", "step", 1);
  p = nullptr;
  if (twin_cuda_profile_create(s, &p, &err) != 0 || !p) {
    h.check("profile on with TWIN_CUDA_PROFILE=step", false, err.msg);
    return h.exit_code();
  }
  for (int step = 0; step < 5; step++) { /* steps 0-3 decode as graphs; step 4 has no graph */
    twin_cuda_profile_mark(p, TWIN_PROFILE_STEP_START);
    spin_kernel<<<1, 32, 0, s>>>(cycles); /* the copies in */
    if (step < 4) twin_cuda_profile_mark(p, TWIN_PROFILE_GRAPH_START);
    spin_kernel<<<1, 32, 0, s>>>(2 * cycles);
    if (step < 4) twin_cuda_profile_mark(p, TWIN_PROFILE_GRAPH_END);
    twin_cuda_profile_mark(p, TWIN_PROFILE_STEP_END);
    CK(cudaStreamSynchronize(s));
    usleep(300);
    twin_cuda_profile_step(p, 1);
  }
  f = tmpfile();
  twin_cuda_profile_print(p, f);
  rewind(f);
  out.clear();
  while (fgets(buf, sizeof buf, f)) out += buf;
  fclose(f);
  printf("%s", out.c_str());
  long n_steps = 0;
  double dev = 0, graph = 0, host = 0;
  const size_t at = out.find("decode steps as graphs: ");
  const bool parsed = at != std::string::npos &&
                      sscanf(out.c_str() + at, "decode steps as graphs: %ld steps; device %lf us a step (copies and "
                             "graph), graph %lf us; host %lf", &n_steps, &dev, &graph, &host) == 4;
  h.check("profile step: not eager; 4 steps counted; graph 20-1000 us < device < host interval",
          twin_cuda_profile_eager(p) == 0 && parsed && n_steps == 4 && graph > 20.0 && graph < 1000.0 &&
              dev > graph && host > dev,
          "the step table is missing or its figures are out of order");
  twin_cuda_profile_destroy(p);
  CK(cudaStreamDestroy(s));
  return h.exit_code();
}
