/* The boot storm's TFTP and NFS clients (bench/storm.py compiles and drives this program).
 *
 * One process, one poll loop, thousands of virtual nodes: bench/storm.py writes a task per
 * line on stdin as each node reaches that stage of its boot, and reads one line per finished
 * stage on stdout, with CLOCK_MONOTONIC times (Python's time.monotonic):
 *
 *   tftp ID SRC FILE...          ->  tftp ID ok|fail T BYTES RETRIES [error]
 *   nfs ID SRC IMAGE_EXPORT NODE_EXPORT
 *                                ->  mount ID ok|fail T 0 RETRIES [error]
 *                                    reads ID ok|fail T BYTES OPERATIONS [error]
 *
 * At the end of stdin (the storm is over: a node still under way is one it gave up on) it
 * writes "- CPU_SECONDS LAG_SECONDS" and exits: its CPU time, and the longest its loop ran
 * late (between two polls, beyond the poll's own wait), which shows a client that could not
 * keep up, as bench/storm_http.py reports its event loop's. bench/storm_nodes.py starts
 * several of these, node N given to process N mod K.
 *
 * (IMAGE_EXPORT and NODE_EXPORT: pseudo paths below "/", the node's own export second.)
 *
 * SRC is the node's own address: every socket of a node is bound to it, so that ganesha's
 * per-node export (CLIENT { Clients = <node address>; }) admits the node, as it would a
 * real one. libnfs makes its sockets itself: this program defines bind() and connect(), which
 * libnfs's calls reach before libc's (symbol interposition; linked with --export-dynamic),
 * and which put the current node's address on every IPv4 socket libnfs binds or connects.
 *
 * NFS is libnfs's NFSv4 client (what dim's ganesha configuration serves), with its async API.
 * A node holds one TCP connection to the server, as a kernel client does for all its mounts
 * of one server: one libnfs context mounts ganesha's pseudo-root "/" and reaches both exports
 * by path; the mount stage looks both export roots up (LOOKUP and GETATTR, as a kernel mount
 * does), so ganesha checks the node's address against each export's CLIENT rule there, and
 * again on every operation below it. The boot reads replay argv[2] (bench/data/boot-reads-*.txt): for each node, one operation
 * after another as a booting system mostly does them, READ of the bytes recorded, READDIR,
 * READLINK. TFTP is RFC 1350 with the blksize and tsize options (RFC 2347-2349), as a PXE
 * ROM asks them; a lost packet is sent again after a second, up to 8 times.
 *
 *   cc -O2 -o storm-client storm_client.c -lnfs -ldl -Wl,--export-dynamic
 *   storm-client SERVER OPSFILE
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nfsc/libnfs.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NFS_V4_VERSION 4
#define BLKSIZE 1432
#define TFTP_TIMEOUT 1.0
#define TFTP_TRIES 8
#define MAX_FILES 8
#define CHUNK (1024 * 1024)
#define PATH_SIZE 1024
#define MOUNT_TRIES 5
#define POLL_WAIT 0.020 /* seconds */

static struct in_addr current_source; /* the node libnfs works for at this moment */
static struct sockaddr_in server;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* -- libnfs's sockets from the node's own address ---------------------------------------- */

int bind(int fd, const struct sockaddr *address, socklen_t length)
{
	static int (*real_bind)(int, const struct sockaddr *, socklen_t);
	if (!real_bind)
		real_bind = dlsym(RTLD_NEXT, "bind");
	if (current_source.s_addr && address->sa_family == AF_INET &&
	    length >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in own = *(const struct sockaddr_in *)address;
		if (own.sin_addr.s_addr == htonl(INADDR_ANY)) {
			own.sin_addr = current_source;
			return real_bind(fd, (struct sockaddr *)&own, sizeof(own));
		}
	}
	return real_bind(fd, address, length);
}

int connect(int fd, const struct sockaddr *address, socklen_t length)
{
	static int (*real_connect)(int, const struct sockaddr *, socklen_t);
	if (!real_connect)
		real_connect = dlsym(RTLD_NEXT, "connect");
	if (current_source.s_addr && address->sa_family == AF_INET) {
		/* as the kernel's RPC client does: an RPC is sent at once, not held by Nagle's
		 * algorithm behind the previous one's unacknowledged bytes */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct sockaddr_in bound;
		socklen_t size = sizeof(bound);
		if (getsockname(fd, (struct sockaddr *)&bound, &size) == 0 &&
		    bound.sin_family == AF_INET && bound.sin_port == 0) {
			memset(&bound, 0, sizeof(bound));
			bound.sin_family = AF_INET;
			bound.sin_addr = current_source;
			bind(fd, (struct sockaddr *)&bound, sizeof(bound));
		}
	}
	return real_connect(fd, address, length);
}

/* -- the boot reads ------------------------------------------------------------------------ */

enum kind { READ, LIST, LINK };
struct operation {
	enum kind kind;
	int export; /* 0: the image, 1: the node's own */
	char *path;
	uint64_t bytes;
};
static struct operation *operations;
static int operation_count;
static const char *lease_path; /* a file of the image, opened to renew the lease */

static void load_operations(const char *file)
{
	FILE *input = fopen(file, "r");
	char line[4096], kind[16], export[16], path[4000];
	unsigned long long bytes;
	if (!input) {
		perror(file);
		exit(2);
	}
	while (fgets(line, sizeof(line), input)) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		bytes = 0;
		if (sscanf(line, "%15s %15s %3999s %llu", kind, export, path, &bytes) < 3)
			continue;
		operations = realloc(operations, (operation_count + 1) * sizeof(*operations));
		struct operation *op = &operations[operation_count++];
		op->kind = strcmp(kind, "read") == 0 ? READ : strcmp(kind, "list") == 0 ? LIST : LINK;
		op->export = strcmp(export, "node") == 0;
		op->path = malloc(strlen(path) + 2);
		sprintf(op->path, "/%s", strcmp(path, ".") == 0 ? "" : path);
		op->bytes = bytes;
		if (op->kind == READ && !op->export && !lease_path)
			lease_path = op->path;
	}
	fclose(input);
}

/* -- NFS nodes ----------------------------------------------------------------------------- */

struct nfs_node {
	char id[64];
	struct in_addr source;
	struct nfs_context *context; /* one connection for both exports */
	char *root[2];               /* the image's export, the node's own */
	char path[PATH_SIZE];        /* of the operation under way */
	char renew_path[PATH_SIZE];
	double used;     /* when the node last sent an operation that renews its lease */
	double answered; /* when the server last answered one (its lease renewed then) */
	int renewing;
	int active;   /* a READ operation (OPEN, READs, CLOSE) is under way */
	int deferred; /* the next operation waits for the renewal to end */
	int mounted, failed, done, operation, retries;
	int remount; /* the mount starts again on a new connection (the main loop does it) */
	uint64_t offset, bytes;
	struct nfsfh *file;
	struct nfs_node *next;
};

/* a path of the reads below one of the node's exports, in ``into`` (PATH_SIZE) */
static const char *below(struct nfs_node *node, int export, const char *path, char *into)
{
	snprintf(into, PATH_SIZE, "%s%s", node->root[export], strcmp(path, "/") ? path : "");
	return into;
}
static struct nfs_node *nfs_nodes;

static void nfs_fail(struct nfs_node *node, const char *stage, const char *error)
{
	if (node->failed || node->done)
		return;
	node->failed = 1;
	printf("%s %s fail %.6f 0 %d %s\n", stage, node->id, now(), node->retries,
	       error ? error : "?");
	fflush(stdout);
}

static void next_operation(struct nfs_node *node);

static void on_step(int err, struct nfs_context *nfs, void *data, void *private)
{
	struct nfs_node *node = private;
	struct operation *op = &operations[node->operation];
	(void)nfs;
	if (err < 0) {
		/* the two ages tell a client that sent nothing (both old) from a server whose
		 * queue held the renewal (sent lately, answered long ago) */
		char message[4300];
		double moment = now();
		snprintf(message, sizeof(message),
			 "%s: %s (lease renewal last sent %.1f s, last answered %.1f s before)",
			 op->path, (char *)data, moment - node->used, moment - node->answered);
		nfs_fail(node, "reads", message);
		return;
	}
	if (op->kind == READ)
		node->answered = now();
	if (op->kind == LIST) {
		nfs_closedir(nfs, data);
	} else if (op->kind == READ && node->file == NULL) { /* opened */
		node->file = data;
		node->offset = 0;
	} else if (op->kind == READ && node->offset < op->bytes && err > 0) { /* a read */
		node->offset += err;
		node->bytes += err;
	} else if (op->kind == READ) { /* closed, or the file ended */
		if (node->offset < op->bytes && err == 0 && node->file) {
			struct nfsfh *file = node->file;
			node->offset = op->bytes;
			nfs_close_async(nfs, file, on_step, node);
			return;
		}
		node->file = NULL;
		node->active = 0;
		node->operation++;
		next_operation(node);
		return;
	}
	if (op->kind == READ) {
		struct nfs_context *context = node->context;
		if (node->offset < op->bytes) {
			uint64_t count = op->bytes - node->offset;
			if (count > CHUNK)
				count = CHUNK;
			node->used = now();
			if (nfs_pread_async(context, node->file, node->offset, count, on_step, node))
				nfs_fail(node, "reads", nfs_get_error(context));
		} else {
			if (nfs_close_async(context, node->file, on_step, node))
				nfs_fail(node, "reads", nfs_get_error(context));
		}
		return;
	}
	node->active = 0;
	node->operation++;
	next_operation(node);
}

static void next_operation(struct nfs_node *node)
{
	if (node->operation >= operation_count) {
		node->done = 1;
		printf("reads %s ok %.6f %llu %d\n", node->id, now(),
		       (unsigned long long)node->bytes, operation_count);
		fflush(stdout);
		return;
	}
	struct operation *op = &operations[node->operation];
	struct nfs_context *context = node->context;
	const char *path = below(node, op->export, op->path, node->path);
	int status;
	if (node->renewing) { /* NFSv4.0: one open owner's OPENs one at a time */
		node->deferred = 1;
		return;
	}
	/* OPEN and CLOSE take the open owner's sequence: no renewal (an OPEN) while they run;
	 * READDIR and READLINK do not, nor do they renew the lease */
	node->active = op->kind == READ;
	current_source = node->source;
	if (op->kind == READ) {
		node->used = now();
		status = nfs_open_async(context, path, O_RDONLY, on_step, node);
	} else if (op->kind == LIST)
		status = nfs_opendir_async(context, path, on_step, node);
	else
		status = nfs_readlink_async(context, path, on_step, node);
	if (status)
		nfs_fail(node, "reads", nfs_get_error(context));
}

/* NFSv4.0 leases: ganesha forgets a client that sent nothing stateful for Lease_Lifetime
 * (15 s in dim's configuration), and libnfs 4.0 never sends RENEW, which a kernel client
 * sends on its own. So a node that sent nothing stateful (OPEN, READ, CLOSE) for RENEW_AFTER
 * seconds, between operations or during a READDIR or READLINK (a run of them can last
 * longer than the lease under a storm), or during its mount's LOOKUPs once its client ID is
 * confirmed (the first OPEN of 3,879 of 10,000 nodes met NFS4ERR_EXPIRED on a loaded machine,
 * their mounts taking a median 65 s), opens and closes a file of the image: OPEN and CLOSE
 * renew the lease as RENEW would. Every 2.5 s, a sixth of the lease:
 * under a storm a renewal waits seconds in ganesha's queue, and libnfs does not recover
 * an expired client as the kernel does (a renewal every 5 s left 19 of 500 nodes expired). */
#define RENEW_AFTER 2.5

static void on_renewed(int err, struct nfs_context *nfs, void *data, void *private)
{
	struct nfs_node *node = private;
	(void)err;
	(void)nfs;
	(void)data;
	node->renewing = 0;
	if (node->deferred) {
		node->deferred = 0;
		next_operation(node);
	}
}

static void on_renew_open(int err, struct nfs_context *nfs, void *data, void *private)
{
	if (err >= 0)
		((struct nfs_node *)private)->answered = now();
	if (err < 0 || nfs_close_async(nfs, data, on_renewed, private))
		on_renewed(0, nfs, NULL, private);
}

static void renew_leases(double moment)
{
	for (struct nfs_node *node = nfs_nodes; node; node = node->next) {
		if (node->mounted < 1 || node->failed || node->done || node->renewing ||
		    node->active || !lease_path || moment - node->used < RENEW_AFTER)
			continue;
		current_source = node->source;
		node->used = moment;
		node->renewing = 1;
		if (nfs_open_async(node->context, below(node, 0, lease_path, node->renew_path),
				   O_RDONLY, on_renew_open, node))
			on_renewed(0, node->context, NULL, node);
	}
}

/* mounted: "/", then each export's root looked up (from the node's address: ganesha admits
 * it to its own export only) */
static void on_mount(int err, struct nfs_context *nfs, void *data, void *private)
{
	struct nfs_node *node = private;
	if (err) {
		char message[PATH_SIZE + 200];
		/* ganesha forgot the client ID between SETCLIENTID and its CONFIRM (a lease, 15 s in
		 * dim's configuration, passed in its queue): a kernel client establishes its ID
		 * again, libnfs fails the mount, so the node mounts again on a new connection. So
		 * too after an error libnfs gives no text for (2 of 10,000 mounts of "/" in a
		 * storm): dim's init.sh tries a mount 4 times */
		if (!node->mounted && (!data || strstr(data, "STALE_CLIENTID")) &&
		    node->retries < MOUNT_TRIES) {
			node->remount = 1;
			return;
		}
		snprintf(message, sizeof(message), "%s: %s",
			 node->mounted ? node->root[node->mounted - 1] : "/",
			 data ? (char *)data : "?");
		nfs_fail(node, "mount", message);
		return;
	}
	if (++node->mounted == 1) /* the client ID confirmed: its lease runs from here */
		node->used = node->answered = now();
	if (node->mounted < 3) {
		current_source = node->source;
		if (nfs_stat64_async(nfs, node->root[node->mounted - 1], on_mount, node))
			nfs_fail(node, "mount", nfs_get_error(nfs));
		return;
	}
	printf("mount %s ok %.6f 0 %d\n", node->id, now(), node->retries);
	fflush(stdout);
	next_operation(node);
}

static void mount_node(struct nfs_node *node)
{
	char name[128];
	current_source = node->source;
	node->context = nfs_init_context();
	nfs_set_version(node->context, NFS_V4_VERSION);
	nfs_set_timeout(node->context, 120000);
	/* each node its own NFSv4 client: one name for all would have ganesha take every new
	 * node for a reboot of the same client and drop the others' state */
	snprintf(name, sizeof(name), "dim-storm-%s", node->id);
	nfs4_set_client_name(node->context, name);
	if (nfs_mount_async(node->context, inet_ntoa(server.sin_addr), "/", on_mount, node))
		nfs_fail(node, "mount", nfs_get_error(node->context));
}

static void start_nfs(char *id, char *source, char *image_export, char *node_export)
{
	struct nfs_node *node = calloc(1, sizeof(*node));
	snprintf(node->id, sizeof(node->id), "%s", id);
	inet_pton(AF_INET, source, &node->source);
	node->root[0] = strdup(image_export);
	node->root[1] = strdup(node_export);
	node->next = nfs_nodes;
	nfs_nodes = node;
	mount_node(node);
}

/* outside libnfs's callbacks: a context is not destroyed from its own */
static void remount(void)
{
	for (struct nfs_node *node = nfs_nodes; node; node = node->next) {
		if (!node->remount)
			continue;
		node->remount = 0;
		node->retries++;
		nfs_destroy_context(node->context);
		mount_node(node);
	}
}

/* -- TFTP nodes ---------------------------------------------------------------------------- */

struct tftp_node {
	char id[64];
	struct in_addr source;
	char *files[MAX_FILES];
	int file_count, file, socket, retries, tries, blksize, finished;
	unsigned block;
	uint64_t bytes;
	unsigned char last[1600];
	size_t last_length;
	struct sockaddr_in peer;
	double sent;
	struct tftp_node *next;
};
static struct tftp_node *tftp_nodes;

static void tftp_send(struct tftp_node *node)
{
	sendto(node->socket, node->last, node->last_length, 0, (struct sockaddr *)&node->peer,
	       sizeof(node->peer));
	node->sent = now();
}

static void tftp_request(struct tftp_node *node)
{
	char *file = node->files[node->file];
	size_t length = 2;
	node->last[0] = 0;
	node->last[1] = 1; /* RRQ */
	length += sprintf((char *)node->last + length, "%s", file) + 1;
	length += sprintf((char *)node->last + length, "octet") + 1;
	length += sprintf((char *)node->last + length, "blksize") + 1;
	length += sprintf((char *)node->last + length, "%d", BLKSIZE) + 1;
	length += sprintf((char *)node->last + length, "tsize") + 1;
	length += sprintf((char *)node->last + length, "0") + 1;
	node->last_length = length;
	node->peer = server;
	node->peer.sin_port = htons(69);
	node->block = 0;
	node->blksize = 512;
	node->tries = 0;
	tftp_send(node);
}

static void tftp_end(struct tftp_node *node, const char *error)
{
	node->finished = 1;
	close(node->socket);
	node->socket = -1;
	if (error)
		printf("tftp %s fail %.6f %llu %d %s\n", node->id, now(),
		       (unsigned long long)node->bytes, node->retries, error);
	else
		printf("tftp %s ok %.6f %llu %d\n", node->id, now(),
		       (unsigned long long)node->bytes, node->retries);
	fflush(stdout);
	for (int i = 0; i < node->file_count; i++)
		free(node->files[i]);
}

static void tftp_ack(struct tftp_node *node, unsigned block)
{
	node->last[0] = 0;
	node->last[1] = 4;
	node->last[2] = block >> 8;
	node->last[3] = block & 0xff;
	node->last_length = 4;
	node->tries = 0;
	tftp_send(node);
}

static void tftp_receive(struct tftp_node *node)
{
	unsigned char packet[65536];
	struct sockaddr_in from;
	socklen_t size = sizeof(from);
	ssize_t length = recvfrom(node->socket, packet, sizeof(packet), 0,
				  (struct sockaddr *)&from, &size);
	if (length < 4)
		return;
	unsigned opcode = packet[1], block = (packet[2] << 8) | packet[3];
	node->peer.sin_port = from.sin_port; /* the server's port for this transfer */
	if (opcode == 5) {
		char error[600];
		snprintf(error, sizeof(error), "TFTP error %u on %s: %.*s", block,
			 node->files[node->file], (int)length - 4, packet + 4);
		for (char *c = error; *c; c++)
			if (*c == '\n' || *c == ' ')
				*c = '_';
		tftp_end(node, error);
	} else if (opcode == 6) { /* OACK: the options the server took */
		for (char *option = (char *)packet + 2; option < (char *)packet + length;) {
			char *value = option + strlen(option) + 1;
			if (strcasecmp(option, "blksize") == 0)
				node->blksize = atoi(value);
			option = value + strlen(value) + 1;
		}
		tftp_ack(node, 0);
	} else if (opcode == 3 && block == ((node->block + 1) & 0xffff)) {
		node->block = block;
		node->bytes += length - 4;
		tftp_ack(node, block);
		if (length - 4 < node->blksize) {
			if (++node->file < node->file_count)
				tftp_request(node);
			else
				tftp_end(node, NULL);
		}
	} else if (opcode == 3) {
		tftp_send(node); /* a duplicate: ACK the last block again */
	}
}

static void start_tftp(char *id, char *source, char **files, int count)
{
	struct tftp_node *node = calloc(1, sizeof(*node));
	struct sockaddr_in own = {.sin_family = AF_INET};
	snprintf(node->id, sizeof(node->id), "%s", id);
	inet_pton(AF_INET, source, &node->source);
	for (int i = 0; i < count && i < MAX_FILES; i++)
		node->files[node->file_count++] = strdup(files[i]);
	node->next = tftp_nodes;
	tftp_nodes = node;
	node->socket = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	own.sin_addr = node->source;
	if (node->socket < 0 || bind(node->socket, (struct sockaddr *)&own, sizeof(own))) {
		tftp_end(node, strerror(errno));
		return;
	}
	tftp_request(node);
}

static void tftp_timeouts(double moment)
{
	for (struct tftp_node *node = tftp_nodes; node; node = node->next) {
		/* the request (no answer yet) waits 1, 2, 4, then 8 s, as a ROM backs off; a
		 * block of the transfer 1 s */
		double timeout = node->block > 0 ? TFTP_TIMEOUT
				 : node->tries < 4 ? TFTP_TIMEOUT * (1 << node->tries) : 8.0;
		if (node->finished || moment - node->sent < timeout)
			continue;
		if (++node->tries > TFTP_TRIES) {
			tftp_end(node, "timed_out");
			continue;
		}
		node->retries++;
		tftp_send(node);
	}
}

/* -- the loop ------------------------------------------------------------------------------ */

static void read_task(char *line)
{
	char *words[16];
	int count = 0;
	for (char *word = strtok(line, " \n"); word && count < 16; word = strtok(NULL, " \n"))
		words[count++] = word;
	if (count >= 4 && strcmp(words[0], "tftp") == 0)
		start_tftp(words[1], words[2], words + 3, count - 3);
	else if (count == 5 && strcmp(words[0], "nfs") == 0)
		start_nfs(words[1], words[2], words[3], words[4]);
	else if (count)
		fprintf(stderr, "storm-client: bad task: %s\n", words[0]);
}

static void prune(void)
{
	struct tftp_node **t = &tftp_nodes;
	while (*t) {
		if ((*t)->finished) {
			struct tftp_node *gone = *t;
			*t = gone->next;
			free(gone);
		} else {
			t = &(*t)->next;
		}
	}
	struct nfs_node **n = &nfs_nodes;
	while (*n) {
		if ((*n)->done || (*n)->failed) {
			struct nfs_node *gone = *n;
			*n = gone->next;
			if (gone->failed) { /* its connection closed, as a failed node's would */
				nfs_destroy_context(gone->context);
				free(gone);
				continue;
			}
			/* the node stays mounted until the end, as a booted node does */
			static struct nfs_node *finished;
			gone->next = finished;
			finished = gone;
		} else {
			n = &(*n)->next;
		}
	}
}

static void report_end(double longest_lag)
{
	struct rusage usage;
	getrusage(RUSAGE_SELF, &usage);
	printf("- %.2f %.3f\n",
	       usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
		       usage.ru_stime.tv_usec / 1e6,
	       longest_lag);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static char buffer[1 << 20];
	size_t buffered = 0;
	struct pollfd *fds = NULL;
	void **owners = NULL;
	int capacity = 0;
	double last_scan = now(), last_poll = last_scan, longest_lag = 0;
	if (argc != 3) {
		fprintf(stderr, "usage: storm-client SERVER OPSFILE\n");
		return 2;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* an interrupted bench leaves no client behind */
	server.sin_family = AF_INET;
	inet_pton(AF_INET, argv[1], &server.sin_addr);
	load_operations(argv[2]);
	fcntl(0, F_SETFL, O_NONBLOCK);
	for (;;) { /* until the end of stdin */
		int count = 0, wanted = 1;
		for (struct tftp_node *t = tftp_nodes; t; t = t->next)
			wanted++;
		for (struct nfs_node *n = nfs_nodes; n; n = n->next)
			wanted++;
		if (wanted > capacity) {
			capacity = wanted * 2;
			fds = realloc(fds, capacity * sizeof(*fds));
			owners = realloc(owners, capacity * sizeof(*owners));
		}
		fds[count] = (struct pollfd){.fd = 0, .events = POLLIN};
		owners[count++] = NULL;
		for (struct tftp_node *t = tftp_nodes; t; t = t->next) {
			fds[count] = (struct pollfd){.fd = t->socket, .events = POLLIN};
			owners[count++] = t;
		}
		int first_nfs = count;
		for (struct nfs_node *n = nfs_nodes; n; n = n->next) {
			fds[count] = (struct pollfd){.fd = nfs_get_fd(n->context),
						     .events = nfs_which_events(n->context)};
			owners[count++] = n;
		}
		if (poll(fds, count, POLL_WAIT * 1000) < 0 && errno != EINTR) {
			perror("poll");
			return 1;
		}
		double moment = now();
		if (moment - last_poll - POLL_WAIT > longest_lag)
			longest_lag = moment - last_poll - POLL_WAIT;
		last_poll = moment;
		int scan = moment - last_scan > 0.5; /* libnfs's timeouts are checked in service */
		if (scan)
			last_scan = moment;
		for (int i = first_nfs; i < count; i++) {
			struct nfs_node *n = owners[i];
			if ((fds[i].revents || scan) && !n->failed && !n->done) {
				current_source = n->source;
				if (nfs_service(n->context, fds[i].revents) < 0 && !n->remount)
					nfs_fail(n, n->mounted < 3 ? "mount" : "reads",
						 nfs_get_error(n->context));
			}
		}
		for (int i = 1; i < first_nfs; i++)
			if (fds[i].revents && !((struct tftp_node *)owners[i])->finished)
				tftp_receive(owners[i]);
		tftp_timeouts(moment);
		remount();
		if (scan)
			renew_leases(moment);
		if (fds[0].revents) {
			ssize_t got = read(0, buffer + buffered, sizeof(buffer) - buffered - 1);
			if (got == 0) {
				report_end(longest_lag);
				return 0;
			}
			if (got > 0) {
				buffered += got;
				buffer[buffered] = 0;
				char *start = buffer, *end;
				while ((end = strchr(start, '\n'))) {
					*end = 0;
					read_task(start);
					start = end + 1;
				}
				buffered -= start - buffer;
				memmove(buffer, start, buffered);
			}
		}
		prune();
	}
}
