#include "fedbroker_system.h"

#if defined(__linux__)
#include <sys/prctl.h>

int fedbroker_set_non_dumpable(void) { return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); }
int fedbroker_is_dumpable(void) { return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); }
#else
int fedbroker_set_non_dumpable(void) { return 0; }
int fedbroker_is_dumpable(void) { return -1; }
#endif
