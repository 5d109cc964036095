/*
 * What an x86 root cell configuration needs for one ivshmem-net link to the
 * eth-ivshmem cell (jailhouse/eth-ivshmem-cell.c). These are fragments, not
 * a configuration: add each one where its comment says, to the root cell
 * configuration of your machine (e.g. Jailhouse's configs/x86/qemu-x86.c, or
 * the one `jailhouse config create` made), then rebuild it.
 *
 * Written for the cell-config format of Jailhouse 0.12 and later. The HPA
 * and the BDF must be the same as in eth-ivshmem-cell.c. See
 * docs/jailhouse.md §3 in the eth-ivshmem repository.
 */

/*
 * 1. In the struct at the top: one more PCI device, and four more memory
 *    regions (the link). If the arrays are sized with numbers, add 4 to
 *    mem_regions[] and 1 to pci_devices[]; the .num_* fields are usually
 *    ARRAY_SIZE() of them and follow by themselves.
 *
 *	struct jailhouse_memory mem_regions[N + 4];
 *	struct jailhouse_pci_device pci_devices[M + 1];
 */

/*
 * 2. In .mem_regions: the link's shared memory, 1 MiB at 0x3f100000, peer
 *    ID 0. Note the index of the first of these four entries: it is the
 *    device's .shmem_regions_start below. The memory must not be RAM the
 *    root cell's Linux uses: reserve it (e.g. memmap=1M$0x3f100000 on the
 *    root kernel's command line, or leave it out of the root cell's RAM
 *    regions), together with the cell's own RAM (0x3a600000, 63 MiB).
 */
	/* ivshmem-net link to eth-ivshmem: state table, R/W, two outputs */
	JAILHOUSE_SHMEM_NET_REGIONS(0x3f100000, 0),

/*
 * 3. In .pci_devices: the virtual ivshmem device of the link, at a BDF no
 *    real device of the root cell uses (00:0f.0 here, the same as in the
 *    eth-ivshmem cell). Linux's ivshmem-net driver binds to it.
 */
	{ /* ivshmem-net link to eth-ivshmem */
		.type = JAILHOUSE_PCI_TYPE_IVSHMEM,
		.domain = 0x0000,
		.bdf = 0x0f << 3,
		.bar_mask = JAILHOUSE_IVSHMEM_BAR_MASK_MSIX,
		/* 2 vectors: state changes and the rings (ivshmem-net uses
		 * the second one for data when it has it) */
		.num_msix_vectors = 2,
		.shmem_regions_start = FIRST_LINK_REGION_INDEX, /* from step 2 */
		.shmem_dev_id = 0,
		.shmem_peers = 2,
		.shmem_protocol = JAILHOUSE_SHMEM_PROTO_VETH,
	},

/*
 * 4. If MSI-X interrupts of the device do not arrive in the root cell,
 *    set .iommu of the device to the IOMMU unit that serves its bus (as
 *    the other devices of the root cell have it).
 */
