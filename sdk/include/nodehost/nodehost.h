/* nodehost: the whole public API of the SDK. Plugins and client programs include this. */
#ifndef NODEHOST_NODEHOST_H
#define NODEHOST_NODEHOST_H

#include <nodehost/status.h>
#include <nodehost/runtime.h>
#include <nodehost/server.h>
#include <nodehost/node.h>
#include <nodehost/call.h>
#include <nodehost/config.h>
#include <nodehost/quorum.h>
#include <nodehost/conf.h>
#include <nodehost/log.h>
#include <nodehost/admin.h>
#include <nodehost/timer.h>
#include <nodehost/tls.h>
#include <nodehost/metrics.h>

#endif
