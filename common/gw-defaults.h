/* The paths and limits usbgwd, usbgwctl and usbgw-hook must agree on. A
 * path here is the default; usbgwd.conf (and the CLI's options) may name
 * another. Data files install to the same places (data/). */
#pragma once

/* usbgwd.conf: read by usbgwd, and by usbgwctl and the hook to find the
 * control socket when it is not the default. */
#define GW_DEFAULT_CONFIG_PATH "/etc/usbgw/usbgwd.conf"
#define GW_DEFAULT_POLICY_PATH "/etc/usbgw/usbgw.policy"
/* Run directory: the control socket and <rundir>/vm/<vm>/<slot>.sock. */
#define GW_DEFAULT_RUNDIR         "/run/usbgw"
#define GW_DEFAULT_CONTROL_SOCKET "/run/usbgw/control.sock"
#define GW_DEFAULT_STATE_PATH     "/var/lib/usbgw/state.json"
#define GW_DEFAULT_AUDIT_LOG      "/var/log/usbgw/audit.log"
/* libvirt's pid file of a running VM's QEMU (qemu:///system: libvirtd
 * writes it as root); {vm} is the domain's name. usbgwd serves a VM's
 * socket only to the process whose pid it holds (vm-peer-check). */
#define GW_DEFAULT_VM_PID_FILE "/run/libvirt/qemu/{vm}.pid"

/* A control request line (usbgwctl, the hook) longer than this is refused
 * and its connection closed. */
#define GW_CONTROL_MAX_REQUEST (64 * 1024)
/* The longest reply line a client reads (a list of many devices). */
#define GW_CONTROL_MAX_REPLY (16 * 1024 * 1024)
