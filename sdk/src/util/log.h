/* Internal logging: the SDK's own messages go through the public logger (nodehost/log.h). */
#ifndef NH_UTIL_LOG_H
#define NH_UTIL_LOG_H

#include <nodehost/log.h>

/** True when messages of this level are printed. */
int nh_log_enabled(nh_log_level level);

/** Internal name of nh_logf(). */
#define nh_log nh_logf

#endif
