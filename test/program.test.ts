// The Pulumi program's tier graph under mocks: names, type tokens, parents and order.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import * as pulumi from "@pulumi/pulumi";
import { COMMAND_TYPE } from "../infra/provider/command.ts";
// The mock monitor passes secret inputs in Pulumi's wire envelope, as the engine does to the provider.
import { unwrapSecrets } from "../infra/provider/provider.ts";

const root = path.join(import.meta.dirname, "..");
const run = promisify(execFile);

/** Where the machine layer would keep the lab's key (never read here). */
const keyDir = "/var/lib/k8slab-test/two-node";
const keyFile = path.join(keyDir, "id_ed25519");

type CommandInputs = {
  create: string;
  delete?: string;
  stdin?: string;
  environment?: Record<string, string>;
  triggers?: unknown[];
  connection?: { port: number };
};
/** Every Command the program declared, by resource name (names repeat across tiers, so a list each). */
const commands = new Map<string, CommandInputs[]>();
const first = (name: string) => commands.get(name)?.[0];
/** Every other resource's inputs (Kubernetes objects, the provider), by "type::name". */
const objects = new Map<string, any>();

/**
 * The PKI generator really runs, as the provider would run it from the project root. vm-up is
 * answered the way scripts/machines/cli.ts answers it; nothing else runs (it would touch VMs).
 */
async function answerCommand(name: string, inputs: CommandInputs) {
  commands.set(name, [...(commands.get(name) ?? []), inputs]);
  let stdout = "";
  if (inputs.create.includes("scripts/pki.ts")) {
    stdout = (await run("/bin/sh", ["-c", inputs.create], { cwd: root, env: { ...process.env, ...inputs.environment } })).stdout;
  } else if (inputs.create.endsWith("vm-up")) {
    const spec = JSON.parse(inputs.environment?.K8SLAB_SPEC ?? "{}");
    stdout = JSON.stringify({
      name: spec.name,
      ssh: { host: "127.0.0.1", port: spec.sshPort, user: "root", keyFile, knownHostsFile: `${keyDir}/known_hosts` },
    });
  }
  return { ...inputs, stdout, stderr: "" };
}

// Mocks must be in place before the program's modules create resources.
await pulumi.runtime.setMocks(
  {
    newResource: async (args) => {
      if (args.type !== COMMAND_TYPE) objects.set(`${args.type}::${args.name}`, args.inputs);
      const state = args.type === COMMAND_TYPE ? await answerCommand(args.name, unwrapSecrets(args.inputs)) : args.inputs;
      return { id: `${args.name}-id`, state };
    },
    call: (args) => args.inputs,
  },
  "k8slab",
  "test",
  false,
);

const { loadLab } = await import("../scripts/lab-file.ts");
const { buildLab, TIER_ORDER } = await import("../infra/program.ts");

const loaded = loadLab(path.join(import.meta.dirname, "../labs/two-node.yaml"));
assert.ok(loaded.ok);
const built = buildLab(loaded.lab);
const tiers = Object.values(built);

const urnOf = (r: pulumi.Resource) => new Promise<string>((resolve) => r.urn.apply(resolve));

test("one tier per DESIGN.md tier, in order, with k8slab:tier type tokens", async () => {
  const expected = [
    ["machines", "Machines"],
    ["pki", "Pki"],
    ["etcd", "Etcd"],
    ["control-plane", "ControlPlane"],
    ["node-agents", "NodeAgents"],
    ["flannel", "Flannel"],
    ["kube-proxy", "KubeProxy"],
    ["coredns", "CoreDns"],
    ["ingress", "Ingress"],
    ["workloads", "Workloads"],
  ];
  assert.deepEqual(
    Object.keys(TIER_ORDER),
    expected.map(([name]) => name),
  );
  const urns = await Promise.all(tiers.map(urnOf));
  // A top-level component's URN: urn:pulumi:STACK::PROJECT::TYPE::NAME (no parent type before it).
  assert.deepEqual(
    urns.map((u) => u.split("::").slice(2).join("::")),
    expected.map(([name, kind]) => `k8slab:tier:${kind}::${name}`),
  );
});

test("each tier builds on the one below it", () => {
  assert.equal(tiers[0].after, undefined);
  for (let i = 1; i < tiers.length; i++) assert.equal(tiers[i].after, tiers[i - 1], `tier ${i} after tier ${i - 1}`);
});

/** Resolves an Output in a test (mocks resolve everything). */
const resolved = <T>(o: pulumi.Output<T>) => new Promise<T>((resolve) => o.apply(resolve));
/** The SDK records a component's children on it; not in its typings. */
const childrenOf = (r: pulumi.Resource) => [...((r as unknown as { __childResources?: Set<pulumi.Resource> }).__childResources ?? [])];

test("pki: every certificate is signed by its CA and no other, keys are secrets, all parented to the tier", async () => {
  const { pki } = built;
  const cas = { ca: new X509Certificate(await resolved(pki.caCertPem)), "etcd-ca": new X509Certificate(await resolved(pki.etcdCaCertPem)) };
  assert.match(cas.ca.subject, /CN=k8slab two-node CA/);
  assert.match(cas["etcd-ca"].subject, /CN=k8slab two-node etcd CA/);
  const names = Object.keys(pki.certs);
  assert.ok(names.includes("kubelet-node2") && names.includes("admin"));
  for (const [name, issued] of Object.entries(pki.certs)) {
    const cert = new X509Certificate(await resolved(issued.certPem));
    const other = issued.spec.ca === "ca" ? "etcd-ca" : "ca";
    assert.ok(cert.verify(cas[issued.spec.ca].publicKey), `${name} is signed by ${issued.spec.ca}`);
    assert.ok(!cert.verify(cas[other].publicKey), `${name} is not signed by ${other}`);
    assert.ok(cert.subject.startsWith(`CN=${issued.spec.commonName}`), name);
    assert.equal(await pulumi.isSecret(issued.keyPem), true, `${name}'s key is a secret`);
  }
  const children = childrenOf(pki);
  assert.equal(children.length, names.length + 2 + 2 + 2, "two CAs + certificates + service-account and encryption keys + one files step per node");
  for (const child of children) assert.match(await resolved(child.urn), /::k8slab:tier:Pki\$k8slab:index:Command::/);
});

test("machines: one VM per node on the lab LAN, reachable through loopback forwards", async () => {
  const { machines } = built;
  assert.equal(machines.apiServerEndpoint, "127.0.0.1:16443");
  const lan = first("lan")!;
  assert.match(lan.create, /net-up$/);
  assert.equal(lan.delete, "node_modules/.bin/tsx scripts/machines/cli.ts down two-node");
  assert.deepEqual(JSON.parse(lan.environment!.K8SLAB_SPEC), { lab: "two-node", netns: "k8slab-two-node", bridge: "lan0", gatewayCidr: "192.168.0.1/24" });
  const specs = ["node1", "node2"].map((n) => JSON.parse(first(`vm-${n}`)!.environment!.K8SLAB_SPEC));
  assert.deepEqual(
    specs.map((s) => [s.name, s.address, s.sshPort, s.memoryMiB]),
    [
      ["node1", "192.168.0.21", 2221, 3072],
      ["node2", "192.168.0.22", 2222, 2048],
    ],
  );
  assert.deepEqual(specs[0].extraForwards, [{ host: 16443, guest: 6443 }], "the API server is forwarded from the control plane only");
  assert.deepEqual(specs[1].extraForwards, []);
  assert.match(first("vm-node2")!.delete!, /"name":"node2".*vm-down$/);
  // The QEMU invocation is an input (not a trigger): a new CPU model restarts the VMs on their disks, it does not replace them.
  const guest = JSON.parse(first("vm-node1")!.environment!.K8SLAB_GUEST);
  assert.deepEqual(guest.accel.tcg, ["-accel", "tcg,thread=multi"]);
  assert.ok(!JSON.stringify(first("vm-node1")!.triggers).includes("tcg"));
  const node2 = machines.connections.node2;
  const conn = await resolved(node2);
  assert.deepEqual([conn.host, conn.port, conn.user], ["127.0.0.1", 2222, "root"]);
  assert.deepEqual([conn.keyFile, conn.knownHostsFile], [keyFile, `${keyDir}/known_hosts`], "the key stays a file: no key material in state");
});

/** The ssh port a Command runs on (2221 node1, 2222 node2), or "local". */
const where = (c: CommandInputs) => c.connection?.port ?? "local";

test("binaries: each node gets what its roles run, from the bundle, over its own ssh endpoint", () => {
  const [node1, node2] = ["node1", "node2"].map((n) => first(`bundle-${n}`)!);
  assert.match(node1.create, /bin\/kube-apiserver .*bin\/kubelet .*cni\/bin\/flannel \| ssh .*-p 2221 /);
  assert.match(node2.create, /bin\/kubelet .*\| ssh .*-p 2222 /);
  assert.doesNotMatch(node2.create, /kube-apiserver|etcd/, "a worker gets no control-plane binaries");
});

test("pki: each node receives only its own certificates and keys", () => {
  const files = (n: string) => first(`files-${n}`)!;
  const paths = (c: CommandInputs) => [...c.stdin!.matchAll(/base64 -d > (\S+)\.k8slab-new/g)].map((m) => m[1]);
  const node2 = paths(files("node2"));
  assert.ok(node2.includes("/etc/kubernetes/pki/kubelet-node2.key") && node2.includes("/etc/kubernetes/kubelet.kubeconfig"));
  assert.ok(!node2.some((p) => /apiserver|etcd-server|service-account|kubelet-node1|admin/.test(p)), `node2 got ${node2.join(" ")}`);
  assert.ok(paths(files("node1")).includes("/etc/kubernetes/pki/service-account.key"));
  assert.match(files("node2").stdin!, /chmod 0600 \/etc\/kubernetes\/pki\/kubelet-node2\.key/);
});

test("cluster tiers: the control plane on node1, agents, flanneld and kube-proxy on every node", () => {
  const units = (name: string) => (commands.get(name) ?? []).map(where);
  assert.deepEqual(units("etcd"), [2221]);
  assert.deepEqual(units("kube-apiserver"), [2221]);
  assert.deepEqual(units("kube-controller-manager"), [2221]);
  assert.deepEqual(units("kube-scheduler"), [2221]);
  for (const unit of ["k8slab-netstamp", "containerd", "kubelet", "flanneld", "kube-proxy"]) {
    assert.deepEqual([...units(`${unit}-node1`), ...units(`${unit}-node2`)], [2221, 2222], unit);
  }
  assert.match(commands.get("flannel-network-config")![0].create, /etcdctl .* put \/coreos\.com\/network\/config /);
  const ready = first("nodes-ready")!;
  assert.match(ready.create, /until "\$KUBECTL" get node node1 node2 /, "first every Node registered");
  assert.match(ready.create, /\n"\$KUBECTL" wait --for=condition=Ready node\/node1 node\/node2 /);
  assert.match(ready.environment!.KUBECTL, /bundle-v1\/bin\/kubectl$/);
  assert.match(ready.environment!.KUBECONFIG, /labs\/two-node\/admin\.kubeconfig$/);
  // A config change restarts a unit: its digest is part of the command's inputs.
  assert.match(commands.get("kubelet-node2")![0].environment!.K8SLAB_CONFIG_SHA256, /^[0-9a-f]{64}$/);
  assert.notEqual(
    first("kube-controller-manager")!.environment!.K8SLAB_CONFIG_SHA256,
    first("kube-scheduler")!.environment!.K8SLAB_CONFIG_SHA256,
    "each unit its own digest",
  );
  assert.match(first("flanneld-node2")!.create, /ip link show flannel\.1 /, "flannel is ready once flannel.<VNI> exists");
});

test("node roles: labels as kubectl shows them; a node without the worker role is tainted, a worker is not; the toolbox tolerates it", async () => {
  const { nodeRolesScript } = await import("../infra/tiers/node-agents.ts");
  const script = first("node-roles")!.create;
  const lab = loaded.ok ? loaded.lab : assert.fail();
  assert.equal(script, nodeRolesScript(lab));
  assert.match(script, /label node node1 --overwrite node-role\.kubernetes\.io\/control-plane= node-role\.kubernetes\.io\/worker=\n/);
  assert.match(script, /label node node2 --overwrite node-role\.kubernetes\.io\/worker= node-role\.kubernetes\.io\/control-plane-\n/);
  assert.doesNotMatch(script, /taint node \S+ --overwrite/, "both nodes of the reference lab run pods");
  const controlPlaneOnly = { ...lab, nodes: lab.nodes.map((n) => (n.isControlPlane ? { ...n, roles: ["control-plane" as const], isWorker: false } : n)) };
  assert.match(nodeRolesScript(controlPlaneOnly), /taint node node1 --overwrite node-role\.kubernetes\.io\/control-plane:NoSchedule/);
  const toolbox = objects.get("kubernetes:apps/v1:DaemonSet::toolbox");
  assert.deepEqual(toolbox.spec.template.spec.tolerations, [{ key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" }]);
});

test("cluster objects: CoreDNS at the lab's DNS IP, workloads and ingress from the lab file, images never pulled", async () => {
  // business-manager registers once data-product has (it waits for it): let registration settle.
  for (let i = 0; i < 100 && !objects.has("kubernetes:apps/v1:Deployment::business-manager"); i++) await new Promise((r) => setTimeout(r, 50));
  const obj = (key: string) => {
    assert.ok(objects.has(key), `no ${key}; have ${[...objects.keys()].filter((k) => k.startsWith("kubernetes")).join(", ")}`);
    return objects.get(key);
  };
  const dns = obj("kubernetes:core/v1:Service::kube-dns");
  assert.equal(dns.spec.clusterIP, "10.254.0.2");
  assert.deepEqual(
    dns.spec.ports.filter((p: any) => p.port === 53).map((p: any) => p.protocol),
    ["UDP", "TCP"],
  );
  assert.equal(obj("kubernetes:apps/v1:Deployment::coredns").spec.replicas, 2);
  assert.match(obj("kubernetes:core/v1:ConfigMap::coredns").data.Corefile, /kubernetes cluster\.local in-addr\.arpa ip6\.arpa/);
  for (const name of ["data-product", "business-manager"]) assert.equal(obj(`kubernetes:apps/v1:Deployment::${name}`).spec.replicas, 3, name);
  const bm = obj("kubernetes:core/v1:Service::business-manager").spec;
  assert.deepEqual([bm.type, bm.ports[0].port, bm.ports[0].nodePort], ["NodePort", 80, 30080]);
  assert.equal(obj("kubernetes:core/v1:Service::data-product-headless").spec.clusterIP, "None");
  const rule = obj("kubernetes:networking.k8s.io/v1:Ingress::lab").spec.rules[0];
  assert.equal(rule.host, "k8s.test.com");
  assert.deepEqual(rule.http.paths[0].backend.service, { name: "business-manager", port: { number: 80 } });
  const ds = obj("kubernetes:apps/v1:DaemonSet::nginx-ingress").spec.template.spec;
  assert.equal(ds.hostNetwork, true);
  // The controller speaks v1beta1: its in-cluster API address is the adapter beside it, a native sidecar.
  const controllerEnv = Object.fromEntries(ds.containers[0].env.filter((e: any) => e.value).map((e: any) => [e.name, e.value]));
  assert.deepEqual([controllerEnv.KUBERNETES_SERVICE_HOST, controllerEnv.KUBERNETES_SERVICE_PORT], ["127.0.0.1", "18001"]);
  assert.equal(ds.initContainers[0].restartPolicy, "Always");
  // The controller reads Secrets only in the namespace it watches.
  assert.ok(ds.containers[0].args.includes("-watch-namespace=default"));
  const secretRules = [...objects.entries()]
    .filter(([k]) => /rbac.authorization.k8s.io\/v1:(Cluster)?Role::nginx-ingress/.test(k))
    .flatMap(([k, v]) =>
      v.rules
        .filter((r: any) => r.resources.includes("secrets"))
        .map(() => `${k.split("::")[0].split(":").pop()} in ${v.metadata.namespace ?? "every namespace"}`),
    );
  assert.deepEqual(secretRules, ["Role in default"]);
  assert.equal(obj("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding::cluster-admins").subjects[0].name, "kubeadm:cluster-admins");
  const containers = [...objects.entries()]
    .filter(([k]) => /:(Deployment|DaemonSet)::/.test(k))
    .flatMap(([, v]) => [...v.spec.template.spec.containers, ...(v.spec.template.spec.initContainers ?? [])]);
  assert.ok(containers.length >= 5);
  for (const c of containers) assert.equal(c.imagePullPolicy, "Never", `${c.name} must not pull: the lab is offline`);
  // The workloads meet Pod Security "restricted": non-root, read-only root (and a /tmp of their own to write to).
  for (const name of ["data-product", "business-manager"]) {
    const spec = obj(`kubernetes:apps/v1:Deployment::${name}`).spec.template.spec;
    assert.equal(spec.securityContext.runAsNonRoot, true, name);
    assert.equal(spec.containers[0].securityContext.readOnlyRootFilesystem, true, name);
    assert.deepEqual(spec.containers[0].volumeMounts, [{ name: "tmp", mountPath: "/tmp" }], name);
  }
});
