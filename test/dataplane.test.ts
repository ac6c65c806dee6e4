// kube-proxy's three modes read back the same way (scripts/probes/dataplane.ts): a ClusterIP's and a
// NodePort's entry, the Service's name in the table, each backend and its connection count.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Lab } from "../core/index.ts";
import { conntrackSpread, dataplaneOf, nftPath, parseIpvsadm } from "../scripts/probes/dataplane.ts";

const IPVS_STATS = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.254.0.1:443                      3       40       38     4120     9876
  -> 192.168.0.21:6443                   3       40       38     4120     9876
TCP  10.254.70.70:80                    30      180      150    12000    21000
  -> 172.30.1.6:80                      10       60       50     4000     7000
  -> 172.30.1.7:80                      10       60       50     4000     7000
  -> 172.30.2.5:80                      10       60       50     4000     7000
TCP  192.168.0.21:30080                  2       12       10      800     1400
  -> 172.30.1.6:80                       1        6        5      400      700
`;

test("ipvsadm: virtual servers and their real servers, with Conns when --stats", () => {
  const servers = parseIpvsadm(IPVS_STATS);
  const bm = servers.find((s) => s.address === "10.254.70.70:80")!;
  assert.equal(bm.conns, 30);
  assert.deepEqual(bm.reals, [
    { address: "172.30.1.6:80", conns: 10 },
    { address: "172.30.1.7:80", conns: 10 },
    { address: "172.30.2.5:80", conns: 10 },
  ]);
  const plain = parseIpvsadm("TCP  10.254.70.70:80 rr\n  -> 172.30.1.6:80                Masq    1      0          0\n");
  assert.deepEqual(plain, [{ proto: "TCP", address: "10.254.70.70:80", reals: [{ address: "172.30.1.6:80", weight: 1 }] }]);
});

test("ipvsadm: both listings in one read give each real server its weight and its Conns; weight 0 is draining", () => {
  const listing = `TCP  10.254.70.70:80 rr
  -> 172.30.1.6:80                Masq    1      0          0
  -> 172.30.1.7:80                Masq    0      0          2
  -> 172.30.2.5:80                Masq    1      0          0
${IPVS_STATS}`;
  const bm = parseIpvsadm(listing).find((s) => s.address === "10.254.70.70:80")!;
  assert.deepEqual(bm.reals, [
    { address: "172.30.1.6:80", weight: 1, conns: 10 },
    { address: "172.30.1.7:80", weight: 0, conns: 10 },
    { address: "172.30.2.5:80", weight: 1, conns: 10 },
  ]);
  const ipvs = dataplaneOf({ services: { kubeProxyMode: "ipvs" } } as Lab);
  const path = ipvs.service(listing, "10.254.70.70", 80);
  assert.deepEqual(
    path.backends.map((b) => [b.to, b.count, b.draining ?? false]),
    [
      ["172.30.1.6:80", 10, false],
      ["172.30.1.7:80", 10, true],
      ["172.30.2.5:80", 10, false],
    ],
  );
  assert.match(ipvs.read, /ipvsadm -Ln; ipvsadm -Ln --stats/, "one read has both listings");
});

const NFT = `table ip kube-proxy {
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
		elements = { 10.254.0.1 . tcp . 443 : goto service-2QRHZV4L-default/kubernetes/tcp/https,
			     10.254.70.70 . tcp . 80 : goto service-ULMVA6XW-default/business-manager/tcp/http }
	}

	map service-nodeports {
		type inet_proto . inet_service : verdict
		elements = { tcp . 30080 : goto external-ULMVA6XW-default/business-manager/tcp/http }
	}

	chain service-ULMVA6XW-default/business-manager/tcp/http {
		ip daddr 10.254.70.70 tcp dport 80 ip saddr != 172.30.0.0/16 jump mark-for-masquerade
		numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-default/business-manager/tcp/http__172.30.1.6/80, 1 : goto endpoint-IC4XQ3PF-default/business-manager/tcp/http__172.30.2.5/80 }
	}

	chain external-ULMVA6XW-default/business-manager/tcp/http {
		jump mark-for-masquerade
		goto service-ULMVA6XW-default/business-manager/tcp/http
	}

	chain endpoint-5OJB2KTY-default/business-manager/tcp/http__172.30.1.6/80 {
		ip saddr 172.30.1.6 jump mark-for-masquerade
		meta l4proto tcp dnat to 172.30.1.6:80
	}

	chain endpoint-IC4XQ3PF-default/business-manager/tcp/http__172.30.2.5/80 {
		ip saddr 172.30.2.5 jump mark-for-masquerade
		meta l4proto tcp dnat to 172.30.2.5:80
	}
}
`;

test("nftables: the service-ips element, the Service's chain, its endpoint chains and their DNAT targets; a NodePort through its external chain", () => {
  const svc = nftPath(NFT, "service-ips", "10.254.70.70 . tcp . 80");
  assert.equal(svc.name, "service-ULMVA6XW-default/business-manager/tcp/http");
  assert.deepEqual(
    svc.backends.map((b) => b.to),
    ["172.30.1.6:80", "172.30.2.5:80"],
  );
  const np = nftPath(NFT, "service-nodeports", "tcp . 30080");
  assert.match(np.entry!, /external-ULMVA6XW/);
  assert.equal(np.name, svc.name, "the external chain hands over to the Service's chain");
  assert.equal(np.backends.length, 2);
  assert.deepEqual(nftPath(NFT, "service-ips", "10.254.9.9 . tcp . 80"), { backends: [] }, "a ClusterIP the table does not know");
});

test("conntrack: connections per backend, from each entry's reply tuple", () => {
  const spread = conntrackSpread(
    [
      "tcp 6 117 TIME_WAIT src=172.30.1.5 dst=10.254.70.70 sport=40001 dport=80 src=172.30.1.6 dst=172.30.1.5 sport=80 dport=40001 [ASSURED] mark=0 use=1",
      "tcp 6 117 TIME_WAIT src=172.30.1.5 dst=10.254.70.70 sport=40002 dport=80 src=172.30.2.5 dst=172.30.1.5 sport=80 dport=40002 [ASSURED] mark=0 use=1",
      "tcp 6 117 TIME_WAIT src=172.30.1.5 dst=10.254.70.70 sport=40003 dport=80 src=172.30.1.6 dst=172.30.1.5 sport=80 dport=40003 [ASSURED] mark=0 use=1",
    ].join("\n"),
  );
  assert.deepEqual(
    [...spread.entries()],
    [
      ["172.30.1.6:80", 2],
      ["172.30.2.5:80", 1],
    ],
  );
});
