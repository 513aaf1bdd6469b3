import ctypes, grp, os, pwd, sys, traceback

conf, conf_dir, port, password, url, region = sys.argv[1:7]
# Keystone's configuration is these files, never /etc/keystone's: oslo.config
# reads sys.argv, the WSGI loader OS_KEYSTONE_CONFIG_FILES.
os.environ.pop('OS_KEYSTONE_CONFIG_DIR', None)
os.environ['OS_KEYSTONE_CONFIG_FILES'] = conf
config = ['--config-file', conf, '--config-dir', conf_dir]
sys.argv = [sys.argv[0]] + config

from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from keystone.cmd import cli
from keystone.server.wsgi import initialize_public_application

owner = ['--keystone-user', pwd.getpwuid(os.getuid()).pw_name,
         '--keystone-group', grp.getgrgid(os.getgid()).gr_name]
commands = (
    ['db_sync'],
    ['fernet_setup'] + owner,
    ['credential_setup'] + owner,
    ['bootstrap', '--bootstrap-password', password,
     '--bootstrap-region-id', region,
     '--bootstrap-admin-url', url, '--bootstrap-internal-url', url,
     '--bootstrap-public-url', url],
)
child = os.fork()
if child == 0:
    status = 1
    try:
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        for command in commands:
            print('keystone-manage', command[0], file=sys.stderr, flush=True)
            cli.main(argv=['keystone-manage'] + config + command)
            # cli.main registers its command option, which oslo.config
            # refuses once arguments were parsed: each command starts afresh.
            cli.CONF.reset()
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) and e.code else 1
    except BaseException:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
_, status = os.waitpid(child, 0)
if status != 0:
    sys.exit('keystone set-up failed (wait status %d)' % status)
print('keystone set-up done', file=sys.stderr, flush=True)

# One thread serves every request: Keystone's SQLite connections must
# stay on the thread that made them (a threaded server gets "SQLite objects
# created in a thread can only be used in that same thread", then "database
# is locked" and 500s under concurrent requests). Requests queue instead;
# each takes a few milliseconds.
class Server(WSGIServer):
    request_queue_size = 64

class Handler(WSGIRequestHandler):
    def log_message(self, format, *args):
        sys.stderr.write('%s\n' % (format % args))

application = initialize_public_application()
httpd = make_server('127.0.0.1', int(port), application, Server, Handler)
print('keystone listening on 127.0.0.1:%s' % port, file=sys.stderr, flush=True)
httpd.serve_forever()
