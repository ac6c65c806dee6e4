// The products data-product knows: a fixed catalog, so every replica answers the same.
export interface CatalogEntry {
  id: string;
  name: string;
  priceCents: number;
  currency: string;
}

export const CATALOG: ReadonlyMap<string, CatalogEntry> = new Map(
  [
    { id: "1", name: "VXLAN tunnel (one VNI)", priceCents: 1450, currency: "EUR" },
    { id: "2", name: "ClusterIP (virtual, never answers ping)", priceCents: 254, currency: "EUR" },
    { id: "3", name: "CoreDNS lookup", priceCents: 53, currency: "EUR" },
  ].map((entry) => [entry.id, entry]),
);
