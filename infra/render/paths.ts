// Where things live on a node: one table so units, configs and remote steps agree.
export const NODE_PATHS = {
  bin: "/usr/local/bin",
  pki: "/etc/kubernetes/pki",
  kubeconfigs: "/etc/kubernetes",
  config: "/etc/kubernetes/config",
  etcdData: "/var/lib/etcd",
  cniBin: "/opt/cni/bin",
  cniConf: "/etc/cni/net.d",
  flannelSubnetFile: "/run/flannel/subnet.env",
  containerdConfig: "/etc/containerd/config.toml",
  containerdSocket: "/run/containerd/containerd.sock",
  units: "/etc/systemd/system",
} as const;

export const pki = (file: string) => `${NODE_PATHS.pki}/${file}`;
export const kubeconfigPath = (who: string) => `${NODE_PATHS.kubeconfigs}/${who}.kubeconfig`;
export const configPath = (file: string) => `${NODE_PATHS.config}/${file}`;
