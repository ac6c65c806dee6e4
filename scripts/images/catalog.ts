// The container images the lab runs: for each, its layers (Debian packages, files and where they come from) and how it starts.
// Plain data: the cache key of a layer is this data with every file replaced by its sha256 (build.ts).
import path from "node:path";
import type { Manifest } from "../toolchain/manifest.ts";
import type { RunConfig } from "./oci.ts";
import type { LayerSpec } from "./rootfs.ts";

/** Registry part of every ref. Nothing is pulled from it: images arrive with `ctr images import`. */
export const REGISTRY = "k8slab.local";
/** Node.js programs bundled by workloads/build.ts, each an image on the shared Node runtime layer. */
export const WORKLOADS = ["business-manager", "data-product", "ingress-adapter"] as const;
/** Informational (Kubernetes ignores ExposedPorts); the ingress adapter's port is set by its tier. */
const WORKLOAD_PORTS: Record<string, string[]> = { "business-manager": ["80/tcp"], "data-product": ["50051/tcp"] };

export interface ImageSpec {
  /** Short name: the ref is REGISTRY/name:tag. */
  name: string;
  /**
   * Upstream version for images of a pinned binary. Absent for images the project composes
   * (toolbox, workloads): their tag is taken from the cache key, so any change gives a new
   * ref and a Deployment that names it rolls out, where a reused tag would leave old pods.
   */
  tag?: string;
  /** Bottom to top. Layers with the same spec are the same blob, so images share them on a node. */
  layers: LayerSpec[];
  run: RunConfig;
}

/** What Debian's nginx.conf does first: load the dynamic modules installed (stream, njs). */
const DEBIAN_MODULES = "include /etc/nginx/modules-enabled/*.conf;";

const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function artifactOf(manifest: Manifest, name: string) {
  const a = manifest.artifacts.find((x) => x.name === name);
  if (!a) throw new Error(`versions.yaml has no artifact "${name}"`);
  return a;
}

/** The bundle file of an artifact's binary, as versions.yaml names it. */
function binaryOf(manifest: Manifest, artifact: string, binary: string) {
  const a = artifactOf(manifest, artifact);
  const out = a.packages.find((p) => path.basename(p.out) === binary)?.out;
  if (!out) throw new Error(`versions.yaml: artifact "${artifact}" builds no ${binary}`);
  return { bundle: out, artifact };
}

/** Toolbox: what the probes run inside pods (dig, curl, ping, iperf3, tcpdump, nc, ip). */
export const TOOLBOX_PACKAGES = ["curl", "bind9-dnsutils", "iproute2", "iputils-ping", "iperf3", "tcpdump", "netcat-openbsd", "ca-certificates"];

/**
 * The Node.js runtime both workloads stand on: minbase trixie (glibc, libstdc++, libgcc_s: what
 * `ldd node` lists) plus the repo's Node 24 binary, checked to load and run inside the tree.
 */
const nodeRuntime: LayerSpec = {
  name: "node-runtime",
  debian: { packages: [] },
  files: [{ path: "usr/local/bin/node", from: { repo: "node_modules/node/bin/node" }, mode: 0o755 }],
  checks: [
    ["ldd", "/usr/local/bin/node"],
    ["/usr/local/bin/node", "--version"],
  ],
};

export function imageCatalog(manifest: Manifest): ImageSpec[] {
  const ingress = artifactOf(manifest, "nginx-ingress");
  const templates = ingress.files.filter((f) => f.out.endsWith(".tmpl")).map((f) => f.out);
  const versioned = (name: string, version: string): RunConfig["labels"] => ({
    "org.opencontainers.image.title": name,
    "org.opencontainers.image.version": version,
  });
  const images: ImageSpec[] = [
    {
      name: "pause",
      tag: artifactOf(manifest, "pause").version,
      layers: [{ name: "pause", files: [{ path: "pause", from: binaryOf(manifest, "pause", "pause"), mode: 0o755 }] }],
      // As upstream's pause image: nobody needs root to sleep.
      run: { entrypoint: ["/pause"], user: "65535:65535", env: [PATH_ENV], labels: versioned("pause", artifactOf(manifest, "pause").version) },
    },
    {
      name: "coredns",
      tag: artifactOf(manifest, "coredns").version,
      layers: [
        {
          name: "coredns",
          files: [
            { path: "coredns", from: binaryOf(manifest, "coredns", "coredns"), mode: 0o755 },
            // Go's resolver reads it to order /etc/hosts before DNS (as in distroless/static, upstream's base).
            { path: "etc/nsswitch.conf", text: "hosts: files dns\n" },
          ],
        },
      ],
      // Root, not upstream's nonroot+setcap: the layer carries no file capabilities; the
      // Deployment can still drop everything but NET_BIND_SERVICE.
      run: {
        entrypoint: ["/coredns"],
        exposedPorts: ["53/tcp", "53/udp"],
        env: [PATH_ENV],
        labels: versioned("coredns", artifactOf(manifest, "coredns").version),
      },
    },
    {
      name: "nginx-ingress",
      tag: ingress.version,
      layers: [
        {
          // What upstream's build/Dockerfile "common" stage (build/scripts/common.sh) does to its nginx base.
          name: "nginx-rootfs",
          debian: { packages: ["nginx", "libnginx-mod-http-js"] },
          // The controller writes nginx.conf and conf.d itself; Debian's default site would take :80.
          remove: ["etc/nginx/sites-enabled/default", "etc/nginx/conf.d"],
          files: [
            { path: "etc/nginx/conf.d", dir: true },
            { path: "etc/nginx/secrets", dir: true },
            { path: "etc/nginx/stream-conf.d", dir: true },
            { path: "var/lib/nginx", dir: true },
          ],
          checks: [
            ["/usr/sbin/nginx", "-V"],
            // The controller's main config with Debian's modules: stream and njs must load.
            [
              "/bin/sh",
              "-c",
              `printf '%s\\n' '${DEBIAN_MODULES}' 'pid /tmp/check.pid; error_log stderr;' 'events {}' 'stream {}' 'http { js_var $k8slab 1; }' > /tmp/check.conf && nginx -t -c /tmp/check.conf`,
            ],
          ],
        },
        {
          // The controller reads nginx.tmpl etc. from its working directory, "/" (upstream copies them there).
          name: "nginx-ingress",
          files: [
            { path: "nginx-ingress", from: binaryOf(manifest, "nginx-ingress", "nginx-ingress"), mode: 0o755 },
            ...templates.map((t) => ({
              path: path.basename(t),
              from: { bundle: t, artifact: "nginx-ingress" },
              // nginx.org's nginx, which upstream builds on, has stream and friends built in; Debian
              // builds them as modules that only its own nginx.conf loads. The controller writes its
              // own nginx.conf from this template, so the template loads them.
              ...(path.basename(t) === "nginx.tmpl" ? { prepend: `${DEBIAN_MODULES}\n` } : {}),
            })),
          ],
        },
      ],
      // Root instead of upstream's 101 + setcap on nginx: no file capabilities in our layers, and
      // the controller runs with hostNetwork on :80/:443.
      run: {
        entrypoint: ["/nginx-ingress"],
        workingDir: "/",
        exposedPorts: ["80/tcp", "443/tcp"],
        stopSignal: "SIGTERM",
        env: [PATH_ENV],
        labels: versioned("nginx-ingress", ingress.version),
      },
    },
    {
      name: "toolbox",
      layers: [
        {
          name: "toolbox-rootfs",
          debian: { packages: TOOLBOX_PACKAGES },
          checks: [
            ["dig", "-v"],
            ["curl", "--version"],
            ["ping", "-V"],
            ["iperf3", "--version"],
            ["tcpdump", "--version"],
            ["ip", "-V"],
          ],
        },
      ],
      // A shell that waits on sleep and exits on SIGTERM: `sleep` as PID 1 ignores SIGTERM, so
      // every pod deletion would wait out the grace period. Cmd, not Entrypoint, so
      // `kubectl run … -- dig …` replaces it.
      run: {
        cmd: ["/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep infinity & wait"],
        env: [PATH_ENV],
        labels: { "org.opencontainers.image.title": "toolbox" },
      },
    },
  ];
  for (const app of WORKLOADS) {
    images.push({
      name: app,
      layers: [nodeRuntime, { name: `${app}-app`, files: [{ path: `app/${app}.mjs`, from: { workload: app } }] }],
      // Node handles SIGTERM itself (workloads/*/main.ts drains, then exits).
      run: {
        entrypoint: ["/usr/local/bin/node", `/app/${app}.mjs`],
        workingDir: "/app",
        exposedPorts: WORKLOAD_PORTS[app],
        env: [PATH_ENV, "NODE_ENV=production"],
        labels: { "org.opencontainers.image.title": app },
      },
    });
  }
  return images;
}
