// Etcd: the cluster's store on the control-plane node, TLS on client and peer ports, its own CA, and
// auth that confines flannel to its prefix; it also holds flannel's network config, which flanneld
// reads at <prefix>/config (the classic layout), written with flannel's own credentials.
import type * as pulumi from "@pulumi/pulumi";
import { FLANNEL_ETCD_PREFIX } from "../../core/names.ts";
import { configPath, ETCD_CLIENT_CERT, etcdctlCommand } from "../../core/node.ts";
import { Command } from "../provider/command.ts";
import { etcdFiles, flannelNetConfFile, renderEtcdAuthScript } from "../render/index.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { Machines } from "./machines.ts";
import { Pki } from "./pki.ts";
import { filesDigest, nodeFiles, nodeUnits } from "./remote.ts";

export class Etcd extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("Etcd", name, args, opts);
    const { lab } = args;
    const connection = this.below(Machines).connections[lab.controlPlane.name];
    const files = etcdFiles(lab);
    const written = nodeFiles("files", connection, files, this.childOpts());
    const etcd = nodeUnits("etcd", connection, ["etcd"], this.childOpts({}, [written]), {
      // As the API server's client: it may read anything, before auth is on and after.
      ready: `${etcdctlCommand(lab, ETCD_CLIENT_CERT.apiServer)} endpoint health >/dev/null 2>&1`,
      what: "etcd's client endpoint",
      configDigest: this.below(Pki).unitDigest(lab.controlPlane.name, "etcd", files),
    });
    const auth = new Command("etcd-auth", { connection, create: renderEtcdAuthScript(lab) }, this.childOpts({}, [etcd]));
    new Command(
      "flannel-network-config",
      {
        connection,
        create: `${etcdctlCommand(lab)} put ${FLANNEL_ETCD_PREFIX}/config "$(cat ${configPath("flannel-net-conf.json")})" >/dev/null`,
        environment: { K8SLAB_CONFIG_SHA256: filesDigest([flannelNetConfFile(lab)]) },
      },
      this.childOpts({}, [auth]),
    );
    this.registerOutputs({});
  }
}
