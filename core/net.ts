// IPv4 address and CIDR arithmetic for lab files, on top of ipaddr.js.
import ipaddr from "ipaddr.js";

/** An IPv4 network: its base address as a 32-bit number and its prefix length. */
export interface Cidr {
  base: number;
  prefix: number;
}

function toNumber(ip: ipaddr.IPv4): number {
  return ip.octets.reduce((n, o) => n * 256 + o, 0);
}

export function toAddress(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
}

/** Parses a dotted-quad IPv4 address; undefined when it is not one (no shorthand forms). */
export function parseAddress(text: unknown): number | undefined {
  if (typeof text !== "string" || !ipaddr.IPv4.isValidFourPartDecimal(text)) return undefined;
  return toNumber(ipaddr.IPv4.parse(text));
}

/** Parses "a.b.c.d/n" where a.b.c.d is the network address itself (no host bits set). */
export function parseCidr(text: unknown): Cidr | undefined {
  if (typeof text !== "string") return undefined;
  const [addr, bits, ...rest] = text.split("/");
  if (rest.length || bits === undefined || !/^\d{1,2}$/.test(bits)) return undefined;
  const base = parseAddress(addr);
  const prefix = Number(bits);
  if (base === undefined || prefix > 32) return undefined;
  if ((base & ~maskOf(prefix)) >>> 0 !== 0) return undefined;
  return { base, prefix };
}

/** Why a CIDR string is not valid, for error messages. */
export function cidrProblem(text: string): string | undefined {
  const [addr, bits] = text.split("/");
  if (bits === undefined) return `"${text}" is not a CIDR (expected a.b.c.d/n)`;
  if (parseAddress(addr) === undefined) return `"${addr}" is not an IPv4 address`;
  if (!/^\d{1,2}$/.test(bits) || Number(bits) > 32) return `"/${bits}" is not a prefix length (0-32)`;
  if (parseCidr(text) === undefined) return `"${text}" has host bits set; the network is ${networkOf(parseAddress(addr)!, Number(bits))}`;
  return undefined;
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
}

function networkOf(address: number, prefix: number): string {
  return `${toAddress((address & maskOf(prefix)) >>> 0)}/${prefix}`;
}

export function formatCidr(c: Cidr): string {
  return `${toAddress(c.base)}/${c.prefix}`;
}

export function size(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function contains(c: Cidr, address: number): boolean {
  return (address & maskOf(c.prefix)) >>> 0 === c.base;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return contains(a, b.base) || contains(b, a.base);
}

/** True when the address is a usable host: inside the network, not its network or broadcast address. */
export function isHostOf(c: Cidr, address: number): boolean {
  if (!contains(c, address)) return false;
  if (c.prefix >= 31) return true;
  return address !== c.base && address !== c.base + size(c) - 1;
}

/** The n-th host address of a network (n = 1 is the first usable one). */
export function nthHost(c: Cidr, n: number): string {
  return toAddress(c.base + n);
}

/** The n-th subnet of the given prefix length inside a network (n = 0 is the first). */
export function nthSubnet(c: Cidr, prefix: number, n: number): string {
  return formatCidr({ base: c.base + n * 2 ** (32 - prefix), prefix });
}
