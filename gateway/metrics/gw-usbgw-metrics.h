/* usbgwd's metrics (docs/metrics.md): the one process-wide GwMetrics and
 * its families, defined here so that every name and help text is in one
 * place. Counters are incremented where their event happens (serve,
 * inventory) through the calls below; the gauges and the per-link figures
 * are set at scrape time by the daemon's collector
 * (gateway/daemon/gw-daemon-metrics.c) from the state it keeps anyway.
 *
 * Threading: the calls below may come from any thread (usbredirhost's
 * callbacks run on the usb thread); the registry is made at the first call
 * and lives as long as the process. */
#pragma once

#include "gw-metrics.h"

G_BEGIN_DECLS

/* What became of a VM's attempt to get a device (usbgw_attach_total). */
typedef enum {
    GW_USBGW_ATTACH_OK,      /* the VM's QEMU got a usbredir session for the device */
    GW_USBGW_ATTACH_REFUSED, /* a peer on the VM socket was refused (not the VM's QEMU, a
                              * second peer) */
    GW_USBGW_ATTACH_FAILED,  /* libvirt refused the redirdev, or the session could not start */
} GwUsbgwAttachResult;

/* Which way usbredir bytes went on a session socket, seen from usbgwd. */
typedef enum {
    GW_USBGW_TO_PEER,   /* written to the peer: the device's answers and data */
    GW_USBGW_FROM_PEER, /* read from the peer: its requests */
} GwUsbgwDirection;

typedef struct {
    GwMetricFamily *build_info;       /* gauge {version} = 1 */
    GwMetricFamily *devices;          /* gauge {state} */
    GwMetricFamily *sessions;         /* gauge */
    GwMetricFamily *attach;           /* counter {result} */
    GwMetricFamily *attach_duration;  /* histogram, seconds */
    GwMetricFamily *redir_bytes;      /* counter {direction} */
    GwMetricFamily *transfer_errors;  /* counter */
    GwMetricFamily *reenumerations;   /* counter */
    GwMetricFamily *required_missing; /* gauge {vm} */
    GwMetricFamily *pool_keys;        /* gauge {pool,state} */
    GwMetricFamily *shares;           /* gauge */
    GwMetricFamily *link_up;          /* gauge {peer} */
    GwMetricFamily *link_bytes;       /* counter {peer,direction}, kept by each GwLink */
    GwMetricFamily *link_connects;    /* counter {peer}, kept by each GwLink */
    GwMetricFamily *link_reconnects;  /* counter {peer}, kept by each GwLink */
    GwMetricFamily *link_streams;     /* gauge {peer} */
    /* cluster mode only (no series otherwise) */
    GwMetricFamily *cluster_up;           /* gauge */
    GwMetricFamily *cluster_holds;        /* gauge {state} */
    GwMetricFamily *cluster_gateways;     /* gauge */
    GwMetricFamily *cluster_devices;      /* gauge */
    GwMetricFamily *cluster_lease_losses; /* counter */
} GwUsbgwMetricFamilies;

/* The registry (made at the first call, never freed). */
GwMetrics *gw_usbgw_metrics_get(void);
const GwUsbgwMetricFamilies *gw_usbgw_metrics_families(void);

/* One attach outcome; @seconds: from the binding to the session, observed
 * in usbgw_attach_duration_seconds when >= 0 (ok only). */
void gw_usbgw_metrics_attach(GwUsbgwAttachResult result, gdouble seconds);
void gw_usbgw_metrics_redir_bytes(GwUsbgwDirection direction, guint64 bytes);
void gw_usbgw_metrics_transfer_error(void);
void gw_usbgw_metrics_reenumeration(void);

/* Buckets of usbgw_attach_duration_seconds: libvirt's hot-plug and QEMU's
 * connect take tenths of a second to a few seconds; a VM that reconnects
 * after a usbgwd restart, up to its <reconnect> timeout. */
#define GW_USBGW_ATTACH_BUCKETS 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60

G_END_DECLS
