/* common/signals.h — shutdown signals for service mains. SIGTERM and SIGINT are caught by a
 * handler that writes the signal number to a self-pipe, so whichever thread the kernel picks
 * (libraries such as OpenBLAS start threads before main() and cannot inherit a blocked mask)
 * the main thread sees it in twin_signals_wait. SIGPIPE is ignored. */
#ifndef TWIN_COMMON_SIGNALS_H
#define TWIN_COMMON_SIGNALS_H

/* Call first thing in main(). Installs the handlers (once per process). */
void twin_signals_block(void);
/* Blocks until SIGTERM or SIGINT arrives (or timeout_ms passes when > 0, then returns 0);
 * returns the signal number. A signal that arrived earlier is returned at once. */
int twin_signals_wait(int timeout_ms);

#endif
