/*
 * Fails the Nth call of one group of libfiu's POSIX failure points, counted
 * from the moment tests/it/fiu.rs arms it: libfiu itself has no "Nth call"
 * mode, but its external-callback points (fiu_enable_external) can decide
 * call by call. Loaded with LD_PRELOAD in front of fiu-run's own preload
 * libraries; libfiu's wrappers do the failing (errno EIO).
 *
 * Control: a 4 KiB file named by PERCH_FIU_CTL, mapped shared, holding
 * little-endian u64s: generation (0 = off), group, target N, calls counted,
 * failures injected. The test writes the first three (and zeroes the rest)
 * while the server is idle, and reads the counters back after a request.
 *
 * write() and writev() also reach sockets, pipes and eventfds (tokio wakes
 * its I/O driver through one; no disk fault makes that fail), so this
 * library wraps them to let only calls on regular files count.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fiu-control.h>
#include <fiu.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

struct ctl {
	volatile uint64_t gen, group, target, calls, fired;
};

static struct ctl *ctl;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static __thread int not_a_file;

static const char *const groups[][6] = {
	{"posix/io/sync/fsync", "posix/io/sync/fdatasync", NULL},
	{"posix/io/rw/write", "posix/io/rw/pwrite", "posix/io/rw/writev",
	 "posix/io/rw/pwritev", "posix/io/rw/ftruncate", NULL},
	{"posix/io/oc/open", NULL},
	{"posix/io/dir/rename", "posix/io/dir/unlink", NULL},
};
#define NGROUPS (sizeof(groups) / sizeof(groups[0]))

static int group_of(const char *name)
{
	for (unsigned g = 0; g < NGROUPS; g++)
		for (int i = 0; groups[g][i]; i++)
			if (strcmp(groups[g][i], name) == 0)
				return (int)g;
	return -1;
}

static int decide(const char *name, int *failnum, void **failinfo,
		  unsigned int *flags)
{
	(void)failnum;
	(void)failinfo;
	(void)flags;
	if (!ctl || __atomic_load_n(&ctl->gen, __ATOMIC_ACQUIRE) == 0 ||
	    not_a_file)
		return 0;
	int g = group_of(name);
	if (g < 0 || (uint64_t)g != ctl->group)
		return 0;
	int fail = 0;
	pthread_mutex_lock(&mu);
	uint64_t n = ++ctl->calls;
	if (n == ctl->target) {
		ctl->fired++;
		fail = 1;
	}
	pthread_mutex_unlock(&mu);
	return fail;
}

/* Marks the calls below it as not on a regular file, for decide(). */
static int mark(int fd)
{
	struct stat st;
	int before = not_a_file;
	not_a_file = !(syscall(SYS_fstat, fd, &st) == 0 && S_ISREG(st.st_mode));
	return before;
}

ssize_t write(int fd, const void *buf, size_t count)
{
	static ssize_t (*next)(int, const void *, size_t);
	if (!next)
		next = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
	int before = mark(fd);
	ssize_t r = next(fd, buf, count);
	int saved = errno;
	not_a_file = before;
	errno = saved;
	return r;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	static ssize_t (*next)(int, const struct iovec *, int);
	if (!next)
		next = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
	int before = mark(fd);
	ssize_t r = next(fd, iov, iovcnt);
	int saved = errno;
	not_a_file = before;
	errno = saved;
	return r;
}

__attribute__((constructor)) static void nth_init(void)
{
	const char *path = getenv("PERCH_FIU_CTL");
	if (!path)
		return;
	/* Raw syscalls: libfiu's wrappers may not be ready yet. */
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	long m = syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_WRITE,
			 MAP_SHARED, fd, 0);
	syscall(SYS_close, fd);
	if (m < 0 && m > -4096)
		return;
	fiu_init(0);
	for (unsigned g = 0; g < NGROUPS; g++)
		for (int i = 0; groups[g][i]; i++)
			fiu_enable_external(groups[g][i], 1, (void *)(long)EIO, 0,
					    decide);
	ctl = (struct ctl *)m;
}
