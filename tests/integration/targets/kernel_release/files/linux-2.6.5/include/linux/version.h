#define UTS_RELEASE "2.6.5-1.358custom"
#define LINUX_VERSION_CODE 132613
#define KERNEL_VERSION(a,b,c) (((a) << 16) + ((b) << 8) + (c))
