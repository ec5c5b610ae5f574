// SPDX-License-Identifier: GPL-2.0
/*
 * hello: the sample out-of-tree module bundled with vermagic.kmod.
 *
 * It exports nothing and touches no hardware: loading it prints one line to
 * the kernel log, unloading prints another. Its parameters show up under
 * /sys/module/hello/parameters/.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/version.h>
#if __has_include(<generated/utsrelease.h>)
#include <generated/utsrelease.h>
#elif __has_include(<linux/utsrelease.h>)
#include <linux/utsrelease.h>
#endif

#ifndef HELLO_VERSION
#define HELLO_VERSION "1.0"
#endif

static char *greeting = "hello";
module_param(greeting, charp, 0444);
MODULE_PARM_DESC(greeting, "Word printed to the kernel log on load");

static int repeat = 1;
module_param(repeat, int, 0444);
MODULE_PARM_DESC(repeat, "How many times the greeting is printed (1-8)");

static int __init hello_init(void)
{
	int i;

	if (repeat < 1 || repeat > 8)
		return -EINVAL;
	for (i = 0; i < repeat; i++)
		pr_info("hello: %s from version %s (built for %s, LINUX_VERSION_CODE %u)\n",
			greeting, HELLO_VERSION, UTS_RELEASE, LINUX_VERSION_CODE);
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("hello: goodbye from version %s\n", HELLO_VERSION);
}

module_init(hello_init);
module_exit(hello_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("vermagic.kmod");
MODULE_DESCRIPTION("Sample out-of-tree module for vermagic.kmod");
MODULE_VERSION(HELLO_VERSION);
