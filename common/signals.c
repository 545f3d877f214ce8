/* common/signals.c — sigwait-based shutdown: no async-signal handlers, no globals. */
#include "common/signals.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

static void shutdown_set(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
}

void twin_signals_block(void) {
  sigset_t set;
  shutdown_set(&set);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
}

int twin_signals_wait(int timeout_ms) {
  sigset_t set;
  shutdown_set(&set);
  if (timeout_ms > 0) {
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    int sig = sigtimedwait(&set, NULL, &ts);
    return sig < 0 ? 0 : sig;
  }
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}
