import sys
from swift.common.ring import RingBuilder

swift_dir = sys.argv[1]
for ring in sys.argv[2:]:
    name, port = ring.split('=')
    builder = RingBuilder(8, 1, 1)
    builder.add_dev({'region': 1, 'zone': 1, 'ip': '127.0.0.1',
                     'port': int(port), 'replication_ip': '127.0.0.1',
                     'replication_port': int(port), 'device': 'd1',
                     'weight': 100.0, 'meta': ''})
    builder.rebalance()
    builder.save('%s/%s.builder' % (swift_dir, name))
    builder.get_ring().save('%s/%s.ring.gz' % (swift_dir, name))
