module druid-rs/tests/peers/oss

go 1.26.0

require (
	github.com/aliyun/alibabacloud-oss-go-sdk-v2 v1.6.1
	github.com/minio/minio-go/v7 v7.0.91
)

require (
	github.com/klauspost/cpuid/v2 v2.2.10 // indirect
	github.com/minio/md5-simd v1.1.2 // indirect
	golang.org/x/sys v0.31.0 // indirect
	golang.org/x/time v0.4.0 // indirect
)
