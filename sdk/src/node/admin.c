/* nh_admin_reload(): nodehost.Admin.Reload through nh_rpc(). The SDK has no copy of
 * admin.proto, so the response is not decoded: success or the node's error is all it reports. */
#include <nodehost/admin.h>
#include <nodehost/call.h>

int nh_admin_reload(nh_node *node, uint32_t timeout_ms, nh_error *err) {
    nh_call_opts co = {.timeout_ms = timeout_ms};
    nh_buf resp = {0};
    /* nodehost.ReloadRequest has no fields: its serialization is zero bytes. */
    int rc = nh_rpc(node, NH_ADMIN_RELOAD_METHOD, "", 0, &co, &resp, err);
    nh_buf_free(&resp);
    return rc;
}
