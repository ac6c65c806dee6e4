// ControlPlane: kube-apiserver, kube-controller-manager and kube-scheduler as systemd units on the
// control-plane node, and for this machine the admin kubeconfig (cluster-admin through RBAC, as
// kubeadm's admin.conf) and the break-glass super-admin one (system:masters): secret outputs, and files.
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { CLUSTER_ADMINS_GROUP } from "../../core/names.ts";
import { API_SERVER_PORT, CA, caCert } from "../../core/node.ts";
import { labPaths } from "../../core/paths.ts";
import { bundleBinDir } from "../../scripts/toolchain/paths.ts";
import { Command } from "../provider/command.ts";
import { controlPlaneFiles } from "../render/index.ts";
import { Tier, type TierArgs } from "../tier.ts";
import { Machines } from "./machines.ts";
import { Pki } from "./pki.ts";
import { nodeFiles, nodeUnits } from "./remote.ts";

export class ControlPlane extends Tier {
  /** The admin kubeconfig (secret), pointing at the API server as this machine reaches it. */
  readonly kubeconfig: pulumi.Output<string>;
  /** Where `k8slab status --json` finds the admin kubeconfig; `down` removes the lab's folder. */
  readonly kubeconfigFile: string;
  /** The kubernetes provider every cluster object above this tier goes through (explicit: never ~/.kube/config). */
  readonly k8s: k8s.Provider;

  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("ControlPlane", name, args, opts);
    const { lab } = args;
    const machines = this.below(Machines);
    const cp = lab.controlPlane.name;
    const connection = machines.connections[cp];
    const pki = this.below(Pki);
    const files = controlPlaneFiles(lab);
    const written = nodeFiles("files", connection, files, this.childOpts());
    // Anonymous requests may read /readyz (authentication.yaml); it answers once etcd and every post-start hook are fine.
    const apiServer = nodeUnits("kube-apiserver", connection, ["kube-apiserver"], this.childOpts({}, [written]), {
      ready: `curl -sf --max-time 5 --cacert ${caCert(CA.kubernetes)} https://127.0.0.1:${API_SERVER_PORT}/readyz >/dev/null`,
      what: "kube-apiserver /readyz",
      readyTimeoutSec: 600,
      configDigest: pki.unitDigest(cp, "kube-apiserver", files),
    });
    // One step per unit, so each restarts only when what it reads changes. The controller-manager's
    // step was once "controllers" (both units): the alias keeps it an update, not a delete that stops both.
    nodeUnits("kube-controller-manager", connection, ["kube-controller-manager"], this.childOpts({ aliases: [{ name: "controllers" }] }, [apiServer]), {
      ready: "systemctl is-active --quiet kube-controller-manager",
      what: "kube-controller-manager",
      configDigest: pki.unitDigest(cp, "kube-controller-manager", files),
    });
    nodeUnits("kube-scheduler", connection, ["kube-scheduler"], this.childOpts({}, [apiServer]), {
      ready: "systemctl is-active --quiet kube-scheduler",
      what: "kube-scheduler",
      configDigest: pki.unitDigest(cp, "kube-scheduler", files),
    });

    const paths = labPaths(lab.name);
    const hostFile = (id: string, file: string, kubeconfig: pulumi.Output<string>) =>
      new Command(
        id,
        {
          create: `mkdir -p "$(dirname "$FILE")" && (umask 077 && cat > "$FILE")`,
          delete: `rm -f "$FILE"`,
          environment: { FILE: file },
          stdin: kubeconfig,
          logging: "none",
        },
        this.childOpts({}, [apiServer]),
      );
    const server = `https://${machines.apiServerEndpoint}`;
    this.kubeconfig = pki.kubeconfig(lab.name, server, "admin");
    this.kubeconfigFile = paths.adminKubeconfig;
    hostFile("admin-kubeconfig", this.kubeconfigFile, this.kubeconfig);
    const superAdmin = pki.kubeconfig(lab.name, server, "super-admin");
    const superAdminFile = hostFile("super-admin-kubeconfig", paths.superAdminKubeconfig, superAdmin);
    // The Kubernetes provider's first request is the OpenAPI document, and it calls the cluster unreachable
    // after 32 s. A new API server builds that document on its first request: past 32 s under TCG on a busy
    // host (seen: a first `up` beside a container lab's). Asked for here first, with time to answer.
    const openApi = new Command(
      "openapi-document",
      {
        create: `for i in $(seq 20); do "$KUBECTL" --kubeconfig="$KUBECONFIG" --request-timeout=120s get --raw=/openapi/v2 >/dev/null && exit 0; sleep 5; done; exit 1`,
        environment: { KUBECTL: `${bundleBinDir()}/kubectl`, KUBECONFIG: paths.superAdminKubeconfig },
        timeoutSec: 1200,
      },
      this.childOpts({}, [superAdminFile]),
    );
    // clusterIdentifier: a renewed credential changes a kubeconfig, and without it the provider (and every
    // object made through it) would be replaced; the lab is the same cluster for as long as it lives.
    const providerArgs = (kubeconfig: pulumi.Output<string>) => ({ kubeconfig, clusterIdentifier: `k8slab-${lab.name}` });
    // The one object only system:masters can make: the binding that gives the admin group its power.
    const breakGlass = new k8s.Provider("k8s-super-admin", providerArgs(superAdmin), { parent: this, dependsOn: [apiServer, openApi] });
    const admins = new k8s.rbac.v1.ClusterRoleBinding(
      "cluster-admins",
      {
        metadata: { name: CLUSTER_ADMINS_GROUP },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: CLUSTER_ADMINS_GROUP }],
      },
      { parent: this, provider: breakGlass },
    );
    this.k8s = new k8s.Provider("k8s", providerArgs(this.kubeconfig), { parent: this, dependsOn: [apiServer, openApi, admins] });
    this.registerOutputs({ kubeconfigFile: this.kubeconfigFile });
  }
}
