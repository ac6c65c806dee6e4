// ControlPlane: kube-apiserver, kube-controller-manager and kube-scheduler as systemd units on the
// control-plane node, and the admin kubeconfig for this machine (a secret output, and a file).
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { API_SERVER_PORT, pki } from "../../core/node.ts";
import { labPaths } from "../../core/paths.ts";
import { Command } from "../provider/command.ts";
import { controlPlaneFiles } from "../render/index.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { Machines } from "./machines.ts";
import { Pki } from "./pki.ts";
import { nodeFiles, nodeUnits, unitDigest } from "./remote.ts";

/** Where `k8slab status --json` finds the admin kubeconfig; `down` removes the lab's folder. */

export class ControlPlane extends Tier {
  /** The admin kubeconfig (secret), pointing at the API server as this machine reaches it. */
  readonly kubeconfig: pulumi.Output<string>;
  readonly kubeconfigFile: string;
  /** The kubernetes provider every cluster object above this tier goes through (explicit: never ~/.kube/config). */
  readonly k8s: k8s.Provider;

  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ControlPlane", name, args, opts);
    const { lab } = args;
    const machines = this.below(Machines);
    const connection = machines.connections[lab.controlPlane.name];
    const files = controlPlaneFiles(lab);
    const written = nodeFiles("files", connection, files, this.childOpts());
    // Anonymous requests may read /readyz (authentication.yaml); it answers once etcd and every post-start hook are fine.
    const apiServer = nodeUnits("kube-apiserver", connection, ["kube-apiserver"], this.childOpts({}, [written]), {
      ready: `curl -sf --max-time 5 --cacert ${pki("ca.crt")} https://127.0.0.1:${API_SERVER_PORT}/readyz >/dev/null`,
      what: "kube-apiserver /readyz",
      readyTimeoutSec: 600,
      configDigest: unitDigest(files, "kube-apiserver"),
    });
    // One step per unit, so each restarts only when what it reads changes. The controller-manager's
    // step was once "controllers" (both units): the alias keeps it an update, not a delete that stops both.
    nodeUnits("kube-controller-manager", connection, ["kube-controller-manager"], this.childOpts({ aliases: [{ name: "controllers" }] }, [apiServer]), {
      ready: "systemctl is-active --quiet kube-controller-manager",
      what: "kube-controller-manager",
      configDigest: unitDigest(files, "kube-controller-manager"),
    });
    nodeUnits("kube-scheduler", connection, ["kube-scheduler"], this.childOpts({}, [apiServer]), {
      ready: "systemctl is-active --quiet kube-scheduler",
      what: "kube-scheduler",
      configDigest: unitDigest(files, "kube-scheduler"),
    });

    this.kubeconfig = this.below(Pki).kubeconfig(lab.name, `https://${machines.apiServerEndpoint}`, "admin");
    this.kubeconfigFile = labPaths(lab.name).adminKubeconfig;
    new Command(
      "admin-kubeconfig",
      {
        create: `mkdir -p "$(dirname "$FILE")" && (umask 077 && cat > "$FILE")`,
        delete: `rm -f "$FILE"`,
        environment: { FILE: this.kubeconfigFile },
        stdin: this.kubeconfig,
        logging: "none",
      },
      this.childOpts({}, [apiServer]),
    );
    this.k8s = new k8s.Provider("k8s", { kubeconfig: this.kubeconfig }, { parent: this, dependsOn: [apiServer] });
    this.registerOutputs({ kubeconfigFile: this.kubeconfigFile });
  }
}
