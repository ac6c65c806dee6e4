// CIDR arithmetic used by lab validation and derivation.

import assert from "node:assert/strict";
import { test } from "node:test";
import { cidrProblem, isHostOf, nthHost, nthSubnet, overlaps, parseAddress, parseCidr } from "../core/net.ts";

test("parses addresses strictly", () => {
  assert.equal(parseAddress("192.168.0.21"), 0xc0a80015);
  for (const bad of ["192.168.0", "192.168.0.256", "1.2.3.4.5", "0x7f.0.0.1", " 1.2.3.4", 42]) assert.equal(parseAddress(bad), undefined, String(bad));
});

test("parses CIDRs and explains bad ones", () => {
  assert.deepEqual(parseCidr("172.30.0.0/16"), { base: 0xac1e0000, prefix: 16 });
  assert.equal(parseCidr("172.30.0.1/16"), undefined);
  assert.match(cidrProblem("172.30.0.1/16")!, /host bits set; the network is 172.30.0.0\/16/);
  assert.match(cidrProblem("172.30.0.0/40")!, /not a prefix length/);
  assert.match(cidrProblem("172.30.0.0")!, /not a CIDR/);
  assert.equal(cidrProblem("0.0.0.0/0"), undefined);
});

test("overlap, hosts and subnets", () => {
  const pods = parseCidr("172.30.0.0/16")!;
  assert.ok(overlaps(pods, parseCidr("172.30.5.0/24")!));
  assert.ok(overlaps(parseCidr("172.16.0.0/12")!, pods));
  assert.ok(!overlaps(pods, parseCidr("172.31.0.0/16")!));
  const lan = parseCidr("192.168.0.0/24")!;
  assert.ok(isHostOf(lan, parseAddress("192.168.0.1")!));
  assert.ok(!isHostOf(lan, parseAddress("192.168.0.0")!), "network address");
  assert.ok(!isHostOf(lan, parseAddress("192.168.0.255")!), "broadcast address");
  assert.equal(nthHost(parseCidr("10.254.0.0/16")!, 1), "10.254.0.1");
  assert.equal(nthSubnet(pods, 24, 2), "172.30.2.0/24");
  assert.equal(nthSubnet(pods, 20, 1), "172.30.16.0/20");
});
