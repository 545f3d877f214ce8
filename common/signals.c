/* common/signals.c — a self-pipe for shutdown signals. The pipe's two descriptors are the one
 * piece of process state a signal handler can reach: set once at start-up, never changed. */
#include "common/signals.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int g_signal_pipe[2] = {-1, -1};

static void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  ssize_t w = write(g_signal_pipe[1], &b, 1); /* async-signal-safe; a full pipe drops extras */
  (void)w;
  errno = saved;
}

void twin_signals_block(void) {
  signal(SIGPIPE, SIG_IGN);
  if (g_signal_pipe[0] >= 0) return;
  if (pipe(g_signal_pipe) != 0) return;
  for (int i = 0; i < 2; i++) {
    fcntl(g_signal_pipe[i], F_SETFD, FD_CLOEXEC);
    fcntl(g_signal_pipe[i], F_SETFL, O_NONBLOCK);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
}

int twin_signals_wait(int timeout_ms) {
  if (g_signal_pipe[0] < 0) twin_signals_block();
  struct pollfd p = {.fd = g_signal_pipe[0], .events = POLLIN};
  for (;;) {
    int r = poll(&p, 1, timeout_ms > 0 ? timeout_ms : -1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    unsigned char b;
    if (read(g_signal_pipe[0], &b, 1) == 1) return b;
  }
}
