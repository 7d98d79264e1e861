#ifndef FEDBROKER_SYSTEM_H
#define FEDBROKER_SYSTEM_H

/// Makes the process non-dumpable: no core file, and no ptrace or /proc/<pid>/mem access by
/// other processes of the same user. prctl is variadic in C, so Swift cannot call it directly.
/// Returns 0, or -1 with errno set.
int fedbroker_set_non_dumpable(void);

/// 1 when the process is dumpable, 0 when not, -1 on error.
int fedbroker_is_dumpable(void);

#endif
