export { ensureNativeBackend, prepareNativeBackend, type NativeInstall } from './ensure-native-backend';
export { ensureTemporalCli } from './ensure-temporal-cli';
export { InstallError, runInstaller, type InstallerOptions } from './run-installer';
