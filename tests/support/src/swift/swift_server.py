import logging, os, sys
kind, conf = sys.argv[1], os.path.abspath(sys.argv[2])

from swift.common import utils
utils.ThreadSafeSysLogHandler = lambda *args, **kwargs: logging.NullHandler()
utils.set_swift_dir(os.path.dirname(conf))
from swift.common import constraints, storage_policy
storage_policy.reload_storage_policies()
constraints.reload_constraints()
from swift.common.wsgi import run_wsgi

kwargs = {}
if kind == 'object':
    from swift.obj import server
    kwargs['global_conf_callback'] = server.global_conf_callback
conf_file, options = utils.parse_options(test_args=[conf, '-v'])
kwargs.update(options)
try:
    status = run_wsgi(conf_file, kind + '-server', **kwargs)
except Exception as e:
    if 'Could not bind' in str(e):
        # The words the test support retries on with new ports.
        sys.stderr.write('Address already in use: %s\n' % e)
        sys.exit(1)
    raise
sys.exit(status)
