/* nodehost: the whole public API of the SDK, for plugins and client programs alike: the
 * runtime, servers, nodes, configurations, every call type, protobuf-c message helpers, the
 * typed-stub runtime used by protoc-gen-nodehost's code, the plugin ABI, configuration trees,
 * logs, admin calls, timers, TLS and metrics. (It needs <protobuf-c/protobuf-c.h>: link
 * libprotobuf-c, as pkg-config's nodehost does.) */
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
#include <nodehost/message.h>
#include <nodehost/stubs.h>
#include <nodehost/plugin.h>

#endif
