/**
 * OCI and Docker media types, and the annotations Nydus images carry (anchors.md §5.1).
 */
export const MediaType = {
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER: 'application/vnd.oci.image.layer.v1.tar',
  OCI_LAYER_GZIP: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OCI_LAYER_ZSTD: 'application/vnd.oci.image.layer.v1.tar+zstd',
  DOCKER_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER_GZIP: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  NYDUS_BLOB: 'application/vnd.oci.image.layer.nydus.blob.v1',
} as const;

export const Annotation = {
  NYDUS_BLOB: 'containerd.io/snapshot/nydus-blob',
  NYDUS_BOOTSTRAP: 'containerd.io/snapshot/nydus-bootstrap',
  NYDUS_FS_VERSION: 'containerd.io/snapshot/nydus-fs-version',
  NYDUS_REFERENCE_BLOB_IDS: 'containerd.io/snapshot/nydus-reference-blob-ids',
  /** On a ZRan meta blob layer (`--oci-ref`): the original OCI layer it indexes. */
  NYDUS_REF: 'containerd.io/snapshot/nydus-ref',
  UNCOMPRESSED: 'containerd.io/uncompressed',
} as const;

/** Accept header for manifest GETs: every manifest and index kind we understand. */
export const MANIFEST_ACCEPT = [MediaType.OCI_MANIFEST, MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST, MediaType.DOCKER_LIST];

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string; 'os.features'?: string[] };
  artifactType?: string;
}

export interface Manifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface Index {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}
