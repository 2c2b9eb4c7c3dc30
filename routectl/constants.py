"""Names shared by the controller, agent, CRD and manifests, so they are spelled once."""

GROUP = "routectl.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
POOL_KIND = "PodCIDRPool"
POOL_PLURAL = "podcidrpools"
POOL_SINGULAR = "podcidrpool"
POOL_SHORT_NAMES = ("pcp",)

# Finalizer that keeps a PodCIDRPool while any Node holds a block from it.
POOL_FINALIZER = f"{GROUP}/in-use"
# Field manager / component name used for writes and Events.
COMPONENT = "routectl"
# The only namespace the API accepts Events about cluster-scoped objects (Nodes, PodCIDRPools) in.
CLUSTER_EVENT_NAMESPACE = "default"
# Marker put in cloud route descriptions (GCE) so ownership never rests on the name alone.
ROUTE_DESCRIPTION_MARKER = "k8s-node-route by routectl"

# Node condition written by the controller (same semantics as the cloud-provider route controller).
CONDITION_NETWORK_UNAVAILABLE = "NetworkUnavailable"
REASON_ROUTE_CREATED = "RouteCreated"
REASON_NO_ROUTE_CREATED = "NoRouteCreated"

# Event reasons.
EVENT_CIDR_ASSIGNED = "CIDRAssigned"
EVENT_CIDR_NOT_AVAILABLE = "CIDRNotAvailable"
EVENT_CIDR_CONFLICT = "CIDRConflict"
EVENT_ROUTE_CREATED = "RouteCreated"
EVENT_FAILED_TO_CREATE_ROUTE = "FailedToCreateRoute"
EVENT_ROUTE_LIMIT_NEARING = "RouteLimitNearing"
EVENT_ROUTE_LIMIT_REACHED = "RouteLimitReached"
EVENT_POOL_INVALID = "PoolInvalid"
EVENT_MASQUERADE_INVALID = "MasqueradeConfigInvalid"
# The agent could not write the node's CNI config (bad podCIDR, plugins missing, directory not writable).
EVENT_CNI_CONFIG_FAILED = "CNIConfigFailed"
# The agent could not apply the node's VXLAN overlay (no InternalIP, a foreign device, netlink refused).
EVENT_OVERLAY_FAILED = "OverlayFailed"

# Pool condition types.
POOL_READY = "Ready"
POOL_EXHAUSTED = "Exhausted"
POOL_ROUTE_LIMIT_NEARING = "RouteLimitNearing"
POOL_ROUTE_LIMIT_REACHED = "RouteLimitReached"
POOL_INVALID = "Invalid"
POOL_ROUTES_OVERFLOWING = "RoutesOverflowing"  # only pools with routeLimitFallback: Overlay

DEFAULT_IPV4_MASK = 24
DEFAULT_IPV6_MASK = 64
DEFAULT_ROUTE_LIMIT_WARNING_PERCENT = 80
# kube-controller-manager bounds the bitmap the same way (cidrset: clusterSubnetMaxDiff = 16).
MAX_BLOCKS_BITS = 16

# Agent's iptables chain and comment prefix.
MASQ_CHAIN = "ROUTECTL-MASQ"

# Node annotation the controller owns: the node's pod traffic goes over the VXLAN overlay because its
# route did not fit the cloud route table (pool spec.routeLimitFallback: Overlay). Agents read it.
TRANSPORT_ANNOTATION = f"{GROUP}/transport"
TRANSPORT_OVERLAY = "overlay"
# PodCIDRPool spec.routeLimitFallback values.
ROUTE_LIMIT_FALLBACK_NONE = "None"
ROUTE_LIMIT_FALLBACK_OVERLAY = "Overlay"
ROUTE_LIMIT_FALLBACKS = (ROUTE_LIMIT_FALLBACK_NONE, ROUTE_LIMIT_FALLBACK_OVERLAY)
