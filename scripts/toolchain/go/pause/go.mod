module k8slab.local/toolchain/pause

go 1.24
