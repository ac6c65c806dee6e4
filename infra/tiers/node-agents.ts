// NodeAgents: containerd + runc, the CNI chain and kubelet on every node (node1 is a worker too),
// then the wait until every node has registered and is Ready.
import * as pulumi from "@pulumi/pulumi";
import type { Lab } from "../../core/index.ts";
import { CONTROL_PLANE_TAINT } from "../../core/names.ts";
import { shq } from "../../core/shell.ts";
import { sshCommandLine } from "../../scripts/machines/ssh.ts";
import { bundleBinDir } from "../../scripts/toolchain/paths.ts";
import { Command, type SshEndpoint } from "../provider/command.ts";
import { NETSTAMP_UNIT, nodeAgentFiles } from "../render/index.ts";
import { type LabImage, Tier, type TierArgs } from "../tier.ts";
import { ControlPlane } from "./control-plane.ts";
import { Machines } from "./machines.ts";
import { Pki } from "./pki.ts";
import { nodeFiles, nodeUnits, unitDigest, waitFor } from "./remote.ts";

/** Streams each OCI archive into the node's containerd (namespace k8s.io, where kubelet looks): no registry, no pull. */
/**
 * Load each image the node's containerd does not list yet (as ref@manifest digest): none when the VM mounted the
 * containerd store, every one on a node without it. Says which, so a learner sees where the images came from.
 */
export function importImagesCommand(images: LabImage[], ep: SshEndpoint): string {
  const listed = `have=$(${sshCommandLine(ep, "ctr -n k8s.io images ls")} | awk 'NR > 1 { print $1 "@" $3 }')`;
  const each = images.map((i) => {
    const id = shq(`${i.ref}@${i.manifestDigest}`);
    return `if grep -qxF ${id} <<<"$have"; then echo ${shq(`${i.ref}: in the node's store`)}; else ${sshCommandLine(ep, "ctr -n k8s.io images import -")} < ${shq(i.archive)} >/dev/null || exit 1; echo ${shq(`${i.ref}: imported`)}; fi`;
  });
  return [listed, ...each].join("\n");
}

/**
 * Each node's roles as `kubectl get nodes` shows them (node-role.kubernetes.io/* labels, set by the
 * admin: NodeRestriction keeps kubelet from setting them), and a node without the worker role
 * tainted so only what tolerates it runs there. Idempotent: a role change in the lab file updates it.
 */
export function nodeRolesScript(lab: Lab): string {
  const { key, effect } = CONTROL_PLANE_TAINT;
  return lab.nodes
    .flatMap((n) => [
      `"$KUBECTL" label node ${n.name} --overwrite ${n.roles.map((r) => `node-role.kubernetes.io/${r}=`).join(" ")} ${["control-plane", "worker"]
        .filter((r) => !n.roles.includes(r as never))
        .map((r) => `node-role.kubernetes.io/${r}-`)
        .join(" ")}`.trimEnd(),
      n.isWorker
        ? `"$KUBECTL" taint node ${n.name} ${key}:${effect}- 2>/dev/null || true # a worker: no taint (none to remove is fine)`
        : `"$KUBECTL" taint node ${n.name} --overwrite ${key}:${effect}`,
    ])
    .join("\n");
}

/** The units of a node's container runtime: set up before the control plane is (see below). */
const RUNTIME_UNITS = [NETSTAMP_UNIT, "containerd"];

export class NodeAgents extends Tier {
  constructor(name: string, args: TierArgs, opts?: pulumi.ComponentResourceOptions) {
    super("NodeAgents", name, args, opts);
    const { lab } = args;
    const machines = this.below(Machines);
    const kubelets: Command[] = [];
    for (const node of lab.nodes) {
      const connection = machines.connections[node.name];
      const files = nodeAgentFiles(lab, node, this.imageRef(args, "pause"));
      // The container runtime and the lab's images need nothing of the control plane: they start once the
      // node has its binaries, while etcd and the API server come up (the import is up's longest step).
      const runtime = files.filter((f) => f.readBy.some((u) => RUNTIME_UNITS.includes(u)));
      const early = (dependsOn: pulumi.Resource[]): pulumi.CustomResourceOptions => ({ parent: this, dependsOn });
      const runtimeWritten = nodeFiles(`runtime-files-${node.name}`, connection, runtime, early([]));
      const written = nodeFiles(
        `files-${node.name}`,
        connection,
        files.filter((f) => !runtime.includes(f)),
        this.childOpts(),
      );
      // The timestamp holder first: it must be up before anything runs ping or tcpdump on the node.
      const netstamp = nodeUnits(`${NETSTAMP_UNIT}-${node.name}`, connection, [NETSTAMP_UNIT], early([runtimeWritten]), {
        ready: `systemctl is-active --quiet ${NETSTAMP_UNIT}`,
        what: NETSTAMP_UNIT,
        configDigest: unitDigest(files, NETSTAMP_UNIT),
      });
      const containerd = nodeUnits(`containerd-${node.name}`, connection, ["containerd"], early([netstamp]), {
        ready: "ctr version >/dev/null 2>&1",
        what: "containerd",
        configDigest: unitDigest(files, "containerd"),
      });
      const images = Object.values(args.images ?? {});
      const loaded = new Command(
        `images-${node.name}`,
        {
          create: pulumi.output(connection).apply((ep) => importImagesCommand(images, ep)),
          // A rebuilt image is loaded again (update); its digest is what changed.
          environment: { K8SLAB_IMAGES_SHA256: images.map((i) => `${i.ref}=${i.sha256}`).join(" ") },
          timeoutSec: 1200,
        },
        early([containerd]),
      );
      kubelets.push(
        nodeUnits(`kubelet-${node.name}`, connection, ["kubelet"], this.childOpts({}, [loaded, written]), {
          ready: "systemctl is-active --quiet kubelet",
          what: "kubelet",
          configDigest: this.below(Pki).unitDigest(node.name, "kubelet", files),
        }),
      );
    }
    // From this machine, with the admin kubeconfig: Ready means kubelet, containerd and the CNI config all check out.
    const kubectl = { KUBECTL: `${bundleBinDir()}/kubectl`, KUBECONFIG: this.below(ControlPlane).kubeconfigFile };
    const ready = new Command(
      "nodes-ready",
      {
        // `kubectl wait` fails at once on a node that has not registered yet: wait for that first.
        create: [
          waitFor(`"$KUBECTL" get node ${lab.nodes.map((n) => n.name).join(" ")} >/dev/null 2>&1`, "every kubelet registered its Node", 300),
          `"$KUBECTL" wait --for=condition=Ready ${lab.nodes.map((n) => `node/${n.name}`).join(" ")} --timeout=600s`,
        ].join("\n"),
        environment: kubectl,
        timeoutSec: 960,
      },
      this.childOpts({}, kubelets),
    );
    new Command("node-roles", { create: nodeRolesScript(lab), environment: kubectl, timeoutSec: 120 }, this.childOpts({}, [ready]));
    this.registerOutputs({});
  }
}
