/*
 * eth-ivshmem as a Jailhouse x86 non-root cell: one CPU, the flat image in
 * 1 MiB of loadable RAM at guest address 0, the communication region at
 * 1 MiB, 62 MiB of RAM from 2 MiB (the kernel's default `mem=64M`), and one
 * ivshmem-net link to the root cell (peer ID 1 of 2).
 *
 * Build it inside a Jailhouse source tree (copy it to configs/x86/ and run
 * `make`: the result is configs/x86/eth-ivshmem-cell.cell). Written for the
 * cell-config format of Jailhouse 0.12 and later (the structures and macros
 * of include/jailhouse/cell-config.h; the revision comes from the tree you
 * build in). See docs/jailhouse.md in the eth-ivshmem repository.
 *
 * What to adapt to your machine:
 *  - the CPU in .cpus (one the root cell gives up),
 *  - the host-physical addresses (HPA) of the two RAM regions and of the
 *    link: free memory that the root cell's Linux does not use (reserve it,
 *    e.g. with memmap= on the root kernel's command line),
 *  - the link's BDF, which must match the root cell's ivshmem-net device.
 */

#include <jailhouse/types.h>
#include <jailhouse/cell-config.h>

/* The link: 1 MiB of shared memory (state table, two 0x7f000 output
 * sections), the same HPA as in the root cell's additions. */
#define ETH_IVSHMEM_LINK_HPA	0x3f100000
/* Its virtual PCI device: 00:0f.0, the same BDF in both cells. */
#define ETH_IVSHMEM_LINK_BDF	(0x0f << 3)

struct {
	struct jailhouse_cell_desc cell;
	__u64 cpus[1];
	struct jailhouse_memory mem_regions[7];
	struct jailhouse_pio pio_regions[1];
	struct jailhouse_pci_device pci_devices[1];
	struct jailhouse_pci_capability pci_caps[0];
} __attribute__((packed)) config = {
	.cell = {
		.signature = JAILHOUSE_CELL_DESC_SIGNATURE,
		.revision = JAILHOUSE_CONFIG_REVISION,
		.name = "eth-ivshmem",
		/*
		 * Not passive: the kernel answers SHUTDOWN_REQUEST (approves
		 * while it serves, denies while a client app measures).
		 * The console goes through the debug-console hypercall.
		 */
		.flags = JAILHOUSE_CELL_VIRTUAL_CONSOLE_PERMITTED,

		.cpu_set_size = sizeof(config.cpus),
		.num_memory_regions = ARRAY_SIZE(config.mem_regions),
		.num_irqchips = 0,
		.num_pio_regions = ARRAY_SIZE(config.pio_regions),
		.num_pci_devices = ARRAY_SIZE(config.pci_devices),
		.num_pci_caps = ARRAY_SIZE(config.pci_caps),

		/* Used only when the hypercall console is not permitted. */
		.console = {
			.type = JAILHOUSE_CON_TYPE_8250,
			.flags = JAILHOUSE_CON_ACCESS_PIO,
			.address = 0x3f8,
		},
	},

	.cpus = {
		0b1000,		/* CPU 3 */
	},

	.mem_regions = {
		/* The ivshmem-net link: four regions, we are peer 1. */
		JAILHOUSE_SHMEM_NET_REGIONS(ETH_IVSHMEM_LINK_HPA, 1),
		/* Loadable RAM for eth-ivshmem.bin: entry at 0, command
		 * line at 0x1000, code and data below 0xA0000. */ {
			.phys_start = 0x3a600000,
			.virt_start = 0,
			.size = 0x00100000,
			.flags = JAILHOUSE_MEM_READ | JAILHOUSE_MEM_WRITE |
				JAILHOUSE_MEM_EXECUTE | JAILHOUSE_MEM_DMA |
				JAILHOUSE_MEM_LOADABLE,
		},
		/* The communication region, where every inmate has it. */ {
			.virt_start = 0x00100000,
			.size = 0x00001000,
			.flags = JAILHOUSE_MEM_READ | JAILHOUSE_MEM_WRITE |
				JAILHOUSE_MEM_COMM_REGION,
		},
		/* RAM for .bss, stack, page tables and the heap: 2 MiB up
		 * to 64 MiB. Resizing it means passing mem= to the kernel. */ {
			.phys_start = 0x3a700000,
			.virt_start = 0x00200000,
			.size = 0x03e00000,
			.flags = JAILHOUSE_MEM_READ | JAILHOUSE_MEM_WRITE |
				JAILHOUSE_MEM_EXECUTE | JAILHOUSE_MEM_DMA,
		},
	},

	.pio_regions = {
		/* COM1, for the console when the hypercall is not permitted
		 * (drop it if the root cell keeps COM1). PCI configuration
		 * through 0xcf8 needs no entry: Jailhouse traps it. */
		PIO_RANGE(0x3f8, 8),
	},

	.pci_devices = {
		{
			.type = JAILHOUSE_PCI_TYPE_IVSHMEM,
			.domain = 0x0000,
			.bdf = ETH_IVSHMEM_LINK_BDF,
			.bar_mask = JAILHOUSE_IVSHMEM_BAR_MASK_MSIX,
			/* vector 0: state changes, vector 1: the rings */
			.num_msix_vectors = 2,
			.shmem_regions_start = 0,
			.shmem_dev_id = 1,
			.shmem_peers = 2,
			.shmem_protocol = JAILHOUSE_SHMEM_PROTO_VETH,
		},
	},
};
